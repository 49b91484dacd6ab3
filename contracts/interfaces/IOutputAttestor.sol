// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IOutputAttestor
/// @notice Signed attestations that an authorised inference node produced given outputs with a
///         registered, non-revoked model.
/// @dev A model's registrant authorises a node key for the model, bound to the model digest and
///      the container image the node must run. The node signs (EIP-712) either one output record
///      or a Merkle root over many; anyone may submit. Each node has a sequence counter: records
///      carry consecutive sequence numbers, and the contract accepts a submission only when its
///      first sequence is the node's next one, so nothing is accepted twice and nothing is
///      skipped. Storage keeps the authorisations and the counters; the attestation itself is
///      recorded in the event log (OutputsAttested, indexed by root), which is committed in the
///      block's receipts, so the per-output cost stays tiny.
///
///      Record (leaf) hash, OpenZeppelin-standard double hashing:
///      `leaf = keccak256(bytes.concat(keccak256(abi.encode(modelId, modelDigest, inputDigest,
///      outputDigest, sequence, timestamp))))`; a batch root is an OpenZeppelin MerkleProof tree
///      (sorted pairs) over the leaves. A single attestation is a batch of one whose root is its leaf.
interface IOutputAttestor {
    /// @notice One output record.
    struct OutputRecord {
        bytes32 modelId;
        bytes32 modelDigest;
        bytes32 inputDigest;
        bytes32 outputDigest;
        uint64 sequence;
        uint64 timestamp;
    }

    /// @notice What a node signs for a batch.
    struct Batch {
        bytes32 modelId;
        bytes32 modelDigest;
        bytes32 root;
        uint64 firstSequence;
        uint32 count;
        uint64 timestamp;
    }

    /// @notice The authorisation of one node for one model.
    struct Authorization {
        bytes32 modelDigest; // zero when not (or no longer) authorised
        bytes32 imageId;
    }

    /// @notice `node` may now attest outputs of `modelId` made with `modelDigest` in `imageId`.
    event NodeAuthorized(bytes32 indexed modelId, address indexed node, bytes32 modelDigest, bytes32 imageId);

    /// @notice `node` may no longer attest outputs of `modelId`.
    event NodeDeauthorized(bytes32 indexed modelId, address indexed node);

    /// @notice `registrant` approved (or withdrew) `operator` to authorise nodes for its models.
    event OperatorSet(address indexed registrant, address indexed operator, bool approved);

    /// @notice `node` attested `count` outputs under `root`, sequences firstSequence.. onwards.
    event OutputsAttested(
        bytes32 indexed root,
        bytes32 indexed modelId,
        address indexed node,
        uint64 firstSequence,
        uint32 count,
        uint64 timestamp
    );

    /// @notice The model is not registered, or revoked.
    error ModelNotActive(bytes32 modelId);
    /// @notice The caller is neither the model's registrant nor an operator it approved.
    error NotModelRegistrant(bytes32 modelId, address account);
    /// @notice The model digest does not belong to the model id (its registration pre-image differs).
    error ModelDigestMismatch(bytes32 modelId, bytes32 modelDigest);
    /// @notice The signer is not authorised for this model and digest.
    error NodeNotAuthorized(bytes32 modelId, address node);
    /// @notice The first sequence is not the node's next one (a replay, or a gap).
    error UnexpectedSequence(address node, uint64 expected, uint64 got);
    /// @notice A batch must hold at least one output.
    error EmptyBatch();
    /// @notice A zero node address or digest.
    error ZeroValue();

    /// @notice Authorise `node` for `modelId`; the caller must be the model's registrant or an
    ///         operator it approved (setOperator). The model
    ///         digest is proven by the model id's pre-image (certificate digest, data commitment,
    ///         parents hash, and the registrant taken from the registry's record; ModelIds).
    function authorizeNode(
        bytes32 modelId,
        address node,
        bytes32 certificateDigest,
        bytes32 modelDigest,
        bytes32 dataCommitment,
        bytes32 parentsHash,
        bytes32 imageId
    ) external;

    /// @notice Withdraw `node`'s authorisation for `modelId` (the model's registrant or operator).
    function deauthorizeNode(bytes32 modelId, address node) external;

    /// @notice Approve (or withdraw) `operator` as the caller's delegate: it may authorise and
    ///         deauthorise nodes for every model the caller registered (e.g. a deployment service).
    function setOperator(address operator, bool approved) external;

    /// @notice True when `registrant` approved `operator`.
    function isOperator(address registrant, address operator) external view returns (bool);

    /// @notice Record one output, signed by an authorised node.
    function attest(OutputRecord calldata record, bytes calldata signature) external returns (bytes32 leaf);

    /// @notice Record a batch of outputs by its Merkle root, signed by an authorised node.
    function attestBatch(Batch calldata batch, bytes calldata signature) external;

    /// @notice `node`'s authorisation for `modelId`.
    function authorizationOf(bytes32 modelId, address node) external view returns (Authorization memory);

    /// @notice The sequence `node`'s next submission must start with.
    function nextSequence(address node) external view returns (uint64);

    /// @notice The leaf hash of a record.
    function leafOf(OutputRecord calldata record) external pure returns (bytes32);

    /// @notice True when `record` is in the tree with `root` (the proof is OpenZeppelin's).
    function verifyRecord(bytes32 root, bytes32[] calldata proof, OutputRecord calldata record)
        external
        pure
        returns (bool);

    /// @notice The EIP-712 digest a node signs for a batch.
    function batchDigest(Batch calldata batch) external view returns (bytes32);

    /// @notice The registry this attestor checks models against.
    function registry() external view returns (address);
}
