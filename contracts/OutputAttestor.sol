// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {IOutputAttestor} from "./interfaces/IOutputAttestor.sol";
import {ModelIds} from "./libraries/ModelIds.sol";

/// @title OutputAttestor
/// @notice Node authorisations per model, and signed, optionally Merkle-batched, attestations of
///         the outputs those nodes produce.
contract OutputAttestor is IOutputAttestor, EIP712 {
    bytes32 private constant BATCH_TYPEHASH = keccak256(
        "OutputBatch(bytes32 modelId,bytes32 modelDigest,bytes32 root,uint64 firstSequence,uint32 count,uint64 timestamp)"
    );

    IModelRegistry private immutable _registry;
    mapping(bytes32 modelId => mapping(address node => Authorization)) private _authorizations;
    mapping(address node => uint64) private _nextSequence;
    mapping(address registrant => mapping(address operator => bool)) private _operators;

    constructor(IModelRegistry registry_) EIP712("provenance OutputAttestor", "1") {
        _registry = registry_;
    }

    /// @inheritdoc IOutputAttestor
    function authorizeNode(
        bytes32 modelId,
        address node,
        bytes32 certificateDigest,
        bytes32 modelDigest,
        bytes32 dataCommitment,
        bytes32 parentsHash,
        bytes32 imageId
    ) external {
        if (node == address(0) || modelDigest == bytes32(0)) revert ZeroValue();
        IModelRegistry.Record memory record = _registry.recordOf(modelId);
        if (record.status != IModelRegistry.Status.Active) revert ModelNotActive(modelId);
        _onlyRegistrantOrOperator(modelId, record.registrant);
        if (ModelIds.compute(certificateDigest, modelDigest, dataCommitment, parentsHash, record.registrant) != modelId) {
            revert ModelDigestMismatch(modelId, modelDigest);
        }
        _authorizations[modelId][node] = Authorization({modelDigest: modelDigest, imageId: imageId});
        emit NodeAuthorized(modelId, node, modelDigest, imageId);
    }

    /// @inheritdoc IOutputAttestor
    function deauthorizeNode(bytes32 modelId, address node) external {
        _onlyRegistrantOrOperator(modelId, _registry.recordOf(modelId).registrant);
        delete _authorizations[modelId][node];
        emit NodeDeauthorized(modelId, node);
    }

    /// @inheritdoc IOutputAttestor
    function setOperator(address operator, bool approved) external {
        if (operator == address(0)) revert ZeroValue();
        _operators[msg.sender][operator] = approved;
        emit OperatorSet(msg.sender, operator, approved);
    }

    /// @inheritdoc IOutputAttestor
    function isOperator(address registrant, address operator) external view returns (bool) {
        return _operators[registrant][operator];
    }

    /// @inheritdoc IOutputAttestor
    function attest(OutputRecord calldata record, bytes calldata signature) external returns (bytes32 leaf) {
        leaf = _leaf(record);
        _attest(record.modelId, record.modelDigest, leaf, record.sequence, 1, record.timestamp, signature);
    }

    /// @inheritdoc IOutputAttestor
    function attestBatch(Batch calldata batch, bytes calldata signature) external {
        if (batch.count == 0) revert EmptyBatch();
        _attest(batch.modelId, batch.modelDigest, batch.root, batch.firstSequence, batch.count, batch.timestamp, signature);
    }

    /// @inheritdoc IOutputAttestor
    function authorizationOf(bytes32 modelId, address node) external view returns (Authorization memory) {
        return _authorizations[modelId][node];
    }

    /// @inheritdoc IOutputAttestor
    function nextSequence(address node) external view returns (uint64) {
        return _nextSequence[node];
    }

    /// @inheritdoc IOutputAttestor
    function leafOf(OutputRecord calldata record) external pure returns (bytes32) {
        return _leaf(record);
    }

    /// @inheritdoc IOutputAttestor
    function verifyRecord(bytes32 root, bytes32[] calldata proof, OutputRecord calldata record)
        external
        pure
        returns (bool)
    {
        return MerkleProof.verifyCalldata(proof, root, _leaf(record));
    }

    /// @inheritdoc IOutputAttestor
    function batchDigest(Batch calldata batch) external view returns (bytes32) {
        return _batchDigest(batch.modelId, batch.modelDigest, batch.root, batch.firstSequence, batch.count, batch.timestamp);
    }

    /// @inheritdoc IOutputAttestor
    function registry() external view returns (address) {
        return address(_registry);
    }

    function _attest(
        bytes32 modelId,
        bytes32 modelDigest,
        bytes32 root,
        uint64 firstSequence,
        uint32 count,
        uint64 timestamp,
        bytes calldata signature
    ) private {
        if (_registry.statusOf(modelId) != IModelRegistry.Status.Active) revert ModelNotActive(modelId);
        address node = ECDSA.recoverCalldata(
            _batchDigest(modelId, modelDigest, root, firstSequence, count, timestamp), signature
        );
        bytes32 authorized = _authorizations[modelId][node].modelDigest;
        if (authorized == bytes32(0) || authorized != modelDigest) revert NodeNotAuthorized(modelId, node);
        uint64 expected = _nextSequence[node];
        if (firstSequence != expected) revert UnexpectedSequence(node, expected, firstSequence);
        _nextSequence[node] = expected + count;
        emit OutputsAttested(root, modelId, node, firstSequence, count, timestamp);
    }

    function _onlyRegistrantOrOperator(bytes32 modelId, address registrant) private view {
        if (registrant != msg.sender && !_operators[registrant][msg.sender]) {
            revert NotModelRegistrant(modelId, msg.sender);
        }
    }

    function _batchDigest(
        bytes32 modelId,
        bytes32 modelDigest,
        bytes32 root,
        uint64 firstSequence,
        uint32 count,
        uint64 timestamp
    ) private view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(BATCH_TYPEHASH, modelId, modelDigest, root, firstSequence, count, timestamp))
        );
    }

    function _leaf(OutputRecord calldata r) private pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(abi.encode(r.modelId, r.modelDigest, r.inputDigest, r.outputDigest, r.sequence, r.timestamp))
            )
        );
    }
}
