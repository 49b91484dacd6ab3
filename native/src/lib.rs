//! The per-output leaf and the tree loop of provenance's output attestation, in Rust.
//!
//! The definitions live in `provenance.attest` (Python) and in the OutputAttestor contract;
//! this crate only computes the same bytes faster, and `provenance.attest_native` checks
//! nothing here decides a value: whatever these functions refuse (an int beyond u64, a leaf
//! that is not 32 bytes, a bytearray), the pure-Python path computes instead.
//!
//! Leaf: keccak256(keccak256(modelId ‖ modelDigest ‖ inputDigest ‖ outputDigest ‖
//! uint256(sequence) ‖ uint256(timestamp))). Tree: pairs hashed in sorted order, an odd node
//! promoted to the next level (OpenZeppelin's MerkleProof).

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use sha2::{Digest, Sha256};
use tiny_keccak::{Hasher, Keccak};

type Hash = [u8; 32];

/// Below this many items per thread, a second thread costs more than it saves.
const MIN_PER_THREAD: usize = 2048;

fn keccak(parts: &[&[u8]]) -> Hash {
    let mut hasher = Keccak::v256();
    for part in parts {
        hasher.update(part);
    }
    let mut out = [0u8; 32];
    hasher.finalize(&mut out);
    out
}

fn word(value: u64) -> Hash {
    let mut out = [0u8; 32];
    out[24..].copy_from_slice(&value.to_be_bytes());
    out
}

fn leaf(model_id: &[u8], model_digest: &[u8], input: &[u8], output: &[u8], seq: u64, ts: u64) -> Hash {
    let inner = keccak(&[model_id, model_digest, input, output, &word(seq), &word(ts)]);
    keccak(&[&inner])
}

fn hash_pair(a: &Hash, b: &Hash) -> Hash {
    if a < b {
        keccak(&[a, b])
    } else {
        keccak(&[b, a])
    }
}

/// `f(i)` for i in 0..n, on up to `threads` threads (0: as many as the machine has).
fn map_parallel<T: Send + Default + Clone, F: Fn(usize) -> T + Sync>(n: usize, threads: usize, f: F) -> Vec<T> {
    let available = std::thread::available_parallelism().map_or(1, |c| c.get());
    let wanted = if threads == 0 { available } else { threads };
    let threads = wanted.min(n / MIN_PER_THREAD).max(1);
    let mut out = vec![T::default(); n];
    if threads == 1 {
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = f(i);
        }
        return out;
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|scope| {
        for (c, part) in out.chunks_mut(chunk).enumerate() {
            let f = &f;
            scope.spawn(move || {
                for (j, slot) in part.iter_mut().enumerate() {
                    *slot = f(c * chunk + j);
                }
            });
        }
    });
    out
}

fn bytes_list<'py>(py: Python<'py>, items: &[Hash]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, items.iter().map(|h| PyBytes::new(py, h)))
}

fn slices<'a, 'py>(items: &'a [Bound<'py, PyBytes>]) -> Vec<&'a [u8]> {
    items.iter().map(|b| b.as_bytes()).collect()
}

fn same_length(n: usize, others: &[usize]) -> PyResult<()> {
    if others.iter().any(|&m| m != n) {
        return Err(PyValueError::new_err("the record fields are not all of the same length"));
    }
    Ok(())
}

/// The leaves of records given field by field (every list as long as the others).
#[pyfunction]
#[pyo3(signature = (model_ids, model_digests, input_digests, output_digests, sequences, timestamps, threads=0))]
#[allow(clippy::too_many_arguments)]
fn record_leaves<'py>(
    py: Python<'py>,
    model_ids: Vec<Bound<'py, PyBytes>>,
    model_digests: Vec<Bound<'py, PyBytes>>,
    input_digests: Vec<Bound<'py, PyBytes>>,
    output_digests: Vec<Bound<'py, PyBytes>>,
    sequences: Vec<u64>,
    timestamps: Vec<u64>,
    threads: usize,
) -> PyResult<Bound<'py, PyList>> {
    let n = model_ids.len();
    same_length(
        n,
        &[model_digests.len(), input_digests.len(), output_digests.len(), sequences.len(), timestamps.len()],
    )?;
    let (ids, mds, ins, outs) =
        (slices(&model_ids), slices(&model_digests), slices(&input_digests), slices(&output_digests));
    let leaves = py.allow_threads(|| {
        map_parallel(n, threads, |i| leaf(ids[i], mds[i], ins[i], outs[i], sequences[i], timestamps[i]))
    });
    bytes_list(py, &leaves)
}

/// For raw outputs with consecutive sequences from `first_sequence`: the sha-256 of every
/// input, of every output, and the records' leaves.
#[pyfunction]
#[pyo3(signature = (model_id, model_digest, inputs, outputs, first_sequence, timestamp, threads=0))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn output_leaves<'py>(
    py: Python<'py>,
    model_id: &[u8],
    model_digest: &[u8],
    inputs: Vec<Bound<'py, PyBytes>>,
    outputs: Vec<Bound<'py, PyBytes>>,
    first_sequence: u64,
    timestamp: u64,
    threads: usize,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>)> {
    let n = inputs.len();
    same_length(n, &[outputs.len()])?;
    if n > 0 && first_sequence.checked_add(n as u64 - 1).is_none() {
        return Err(PyOverflowError::new_err("the sequences do not fit in 64 bits"));
    }
    let (ins, outs) = (slices(&inputs), slices(&outputs));
    let triples = py.allow_threads(|| {
        map_parallel(n, threads, |i| {
            let x: Hash = Sha256::digest(ins[i]).into();
            let y: Hash = Sha256::digest(outs[i]).into();
            let l = leaf(model_id, model_digest, &x, &y, first_sequence + i as u64, timestamp);
            (x, y, l)
        })
    });
    let xs: Vec<Hash> = triples.iter().map(|t| t.0).collect();
    let ys: Vec<Hash> = triples.iter().map(|t| t.1).collect();
    let ls: Vec<Hash> = triples.iter().map(|t| t.2).collect();
    Ok((bytes_list(py, &xs)?, bytes_list(py, &ys)?, bytes_list(py, &ls)?))
}

/// The levels of the tree above `leaves` (32 bytes each), bottom up, the root's last.
#[pyfunction]
fn tree_levels<'py>(py: Python<'py>, leaves: Vec<Bound<'py, PyBytes>>) -> PyResult<Bound<'py, PyList>> {
    if leaves.is_empty() {
        return Err(PyValueError::new_err("an output tree needs at least one leaf"));
    }
    let mut level: Vec<Hash> = Vec::with_capacity(leaves.len());
    for b in &leaves {
        let bytes = b.as_bytes();
        let hash: Hash = bytes
            .try_into()
            .map_err(|_| PyTypeError::new_err(format!("a leaf of {} bytes is not 32", bytes.len())))?;
        level.push(hash);
    }
    let levels = py.allow_threads(move || {
        let mut levels: Vec<Vec<Hash>> = Vec::new();
        while level.len() > 1 {
            let mut parent: Vec<Hash> = level.chunks_exact(2).map(|p| hash_pair(&p[0], &p[1])).collect();
            if level.len() % 2 == 1 {
                parent.push(level[level.len() - 1]);
            }
            levels.push(parent.clone());
            level = parent;
        }
        levels
    });
    PyList::new(py, levels.iter().map(|l| bytes_list(py, l)).collect::<PyResult<Vec<_>>>()?)
}

#[pymodule]
fn provenance_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(record_leaves, m)?)?;
    m.add_function(wrap_pyfunction!(output_leaves, m)?)?;
    m.add_function(wrap_pyfunction!(tree_levels, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
