// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {ModelIds} from "./libraries/ModelIds.sol";

/// @title ModelRegistry
/// @notice Birth certificates and the family tree of ML models: one packed slot per model,
///         typed multi-parent links in events, permanent revocation, and the Docker image a
///         model's registrant bound to it.
contract ModelRegistry is IModelRegistry, AccessControl, EIP712, Nonces {
    /// @notice May register models when the registry is allowlisted.
    bytes32 public constant REGISTRANT_ROLE = keccak256("REGISTRANT_ROLE");
    /// @notice May revoke any model.
    bytes32 public constant AUDITOR_ROLE = keccak256("AUDITOR_ROLE");

    bytes32 private constant PARENT_TYPEHASH = keccak256("Parent(bytes32 id,uint8 relation)");
    bytes32 private constant REGISTER_TYPEHASH = keccak256(
        "Register(bytes32 certificateDigest,bytes32 modelDigest,bytes32 dataCommitment,Parent[] parents,"
        "bool acknowledgeRevokedParents,address registrant,uint256 nonce,uint256 deadline)"
        "Parent(bytes32 id,uint8 relation)"
    );

    bool private immutable _open;
    mapping(bytes32 id => Record) private _records;
    mapping(bytes32 id => ImageBinding) private _images;

    /// @param admin holds DEFAULT_ADMIN_ROLE and manages registrants and auditors.
    /// @param open_ when true anyone may register; when false only REGISTRANT_ROLE holders.
    constructor(address admin, bool open_) EIP712("provenance ModelRegistry", "1") {
        _open = open_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IModelRegistry
    function register(Registration calldata registration) external returns (bytes32 id) {
        _checkRegistrant(msg.sender);
        return _register(registration, msg.sender);
    }

    /// @inheritdoc IModelRegistry
    function registerBatch(Registration[] calldata registrations) external returns (bytes32[] memory ids) {
        uint256 n = registrations.length;
        if (n == 0) revert EmptyBatch();
        _checkRegistrant(msg.sender);
        ids = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            ids[i] = _register(registrations[i], msg.sender);
        }
    }

    /// @inheritdoc IModelRegistry
    function registerFor(
        Registration calldata registration,
        address registrant,
        uint256 deadline,
        bytes calldata signature
    ) external returns (bytes32 id) {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        _checkRegistrant(registrant);
        bytes32 digest = _delegatedDigest(registration, registrant, _useNonce(registrant), deadline);
        if (!SignatureChecker.isValidSignatureNow(registrant, digest, signature)) {
            revert InvalidSignature(registrant);
        }
        return _register(registration, registrant);
    }

    /// @inheritdoc IModelRegistry
    function revoke(bytes32 id, bytes32 reasonDigest) external {
        Record storage record = _records[id];
        Status status = record.status;
        if (status == Status.None) revert ModelNotFound(id);
        if (status == Status.Revoked) revert AlreadyRevoked(id);
        if (msg.sender != record.registrant && !hasRole(AUDITOR_ROLE, msg.sender)) {
            revert UnauthorizedRevoker(id, msg.sender);
        }
        record.status = Status.Revoked;
        emit ModelRevoked(id, msg.sender, reasonDigest);
    }

    /// @inheritdoc IModelRegistry
    function bindImage(bytes32 id, bytes32 imageId, bytes32 recordDigest) external {
        Record storage record = _records[id];
        Status status = record.status;
        if (status == Status.None) revert ModelNotFound(id);
        if (msg.sender != record.registrant) revert UnauthorizedBinder(id, msg.sender);
        if (status != Status.Active) revert ModelNotActive(id);
        if (imageId == bytes32(0) || recordDigest == bytes32(0)) revert ZeroDigest();
        _images[id] =
            ImageBinding({imageId: imageId, recordDigest: recordDigest, boundAt: uint40(block.timestamp)});
        emit ImageBound(id, imageId, recordDigest);
    }

    /// @inheritdoc IModelRegistry
    function imageOf(bytes32 id) external view returns (ImageBinding memory) {
        return _images[id];
    }

    /// @inheritdoc IModelRegistry
    function recordOf(bytes32 id) external view returns (Record memory) {
        return _records[id];
    }

    /// @inheritdoc IModelRegistry
    function statusOf(bytes32 id) external view returns (Status) {
        return _records[id].status;
    }

    /// @inheritdoc IModelRegistry
    function computeId(Registration calldata registration, address registrant) external pure returns (bytes32) {
        return _computeId(registration, registrant);
    }

    /// @inheritdoc IModelRegistry
    function delegatedDigest(
        Registration calldata registration,
        address registrant,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32) {
        return _delegatedDigest(registration, registrant, nonce, deadline);
    }

    /// @inheritdoc IModelRegistry
    function openRegistration() external view returns (bool) {
        return _open;
    }

    function _register(Registration calldata r, address registrant) private returns (bytes32 id) {
        if (r.certificateDigest == bytes32(0) || r.modelDigest == bytes32(0)) revert ZeroDigest();
        id = _computeId(r, registrant);
        if (_records[id].status != Status.None) revert ModelAlreadyRegistered(id);

        Parent[] calldata parents = r.parents;
        uint256 n = parents.length;
        bool revokedParentAccepted;
        bytes32 previous;
        for (uint256 i; i < n; ++i) {
            bytes32 parentId = parents[i].id;
            if (i != 0 && parentId <= previous) revert ParentsNotCanonical(i);
            previous = parentId;
            Status status = _records[parentId].status;
            if (status == Status.None) revert ParentNotFound(parentId);
            if (status == Status.Revoked) {
                if (!r.acknowledgeRevokedParents) revert ParentRevoked(parentId);
                revokedParentAccepted = true;
            }
        }

        _records[id] = Record({
            registrant: registrant,
            registeredAt: uint40(block.timestamp),
            status: Status.Active,
            revokedParentAcknowledged: revokedParentAccepted
        });

        if (n == 0) {
            emit ModelRegistered(id, bytes32(0), registrant, r.certificateDigest, r.modelDigest, r.dataCommitment, Relation.FineTune);
        } else {
            emit ModelRegistered(
                id, parents[0].id, registrant, r.certificateDigest, r.modelDigest, r.dataCommitment, parents[0].relation
            );
            for (uint256 i = 1; i < n; ++i) {
                emit ParentLinked(id, parents[i].id, parents[i].relation);
            }
        }
        if (revokedParentAccepted) {
            for (uint256 i; i < n; ++i) {
                if (_records[parents[i].id].status == Status.Revoked) emit RevokedParentAcknowledged(id, parents[i].id);
            }
        }
    }

    function _checkRegistrant(address account) private view {
        if (!_open && !hasRole(REGISTRANT_ROLE, account)) revert UnauthorizedRegistrant(account);
    }

    function _computeId(Registration calldata r, address registrant) private pure returns (bytes32) {
        return ModelIds.compute(
            r.certificateDigest, r.modelDigest, r.dataCommitment, ModelIds.parentsHash(r.parents), registrant
        );
    }

    function _delegatedDigest(
        Registration calldata r,
        address registrant,
        uint256 nonce,
        uint256 deadline
    ) private view returns (bytes32) {
        Parent[] calldata parents = r.parents;
        bytes32[] memory parentHashes = new bytes32[](parents.length);
        for (uint256 i; i < parents.length; ++i) {
            parentHashes[i] = keccak256(abi.encode(PARENT_TYPEHASH, parents[i].id, uint8(parents[i].relation)));
        }
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    REGISTER_TYPEHASH,
                    r.certificateDigest,
                    r.modelDigest,
                    r.dataCommitment,
                    keccak256(abi.encodePacked(parentHashes)),
                    r.acknowledgeRevokedParents,
                    registrant,
                    nonce,
                    deadline
                )
            )
        );
    }
}
