// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IModelRegistry
/// @notice Birth certificates and the family tree of machine-learning models.
/// @dev A model is registered under an id derived from what its certificate commits to and from
///      who registered it:
///      `id = keccak256(abi.encode(certificateDigest, modelDigest, dataCommitment, keccak256(abi.encode(parents)), registrant))`
///      (the formula lives in libraries/ModelIds.sol). `registrant` is `msg.sender` for `register`
///      and `registerBatch`, and the signer for `registerFor`.
///      Why the registrant is in the id: certificates are public (IPFS), so without it anyone who
///      sees a creator's certificate could register it first, take the revoke and authorise-node
///      power over the creator's model, and leave the creator with `ModelAlreadyRegistered`
///      forever. The contract cannot refuse such a squat by itself: it never sees the
///      certificate body, so it cannot know who the creator is, and requiring the creator's
///      signature on every path would mean carrying the body (or a second signature scheme) on
///      chain. Binding the registrant instead costs one more word of hashing: a squatter gets an
///      id under its own address, the creator's id stays free, and verifiers, who read the
///      certificate, reject any registration whose registrant is not the certificate's creator.
///      `certificateDigest` is the sha-256 of the certificate's canonical (RFC 8785) bytes. The
///      certificate is stored in IPFS as one raw block, so its CIDv1 is (raw codec, sha2-256,
///      certificateDigest): the digest on chain is enough to fetch and check the document.
///      Storage keeps one packed slot per model; everything else lives in events and in the
///      certificate. Children and a registrant's models are found through indexed events.
interface IModelRegistry {
    /// @notice How a child model was derived from a parent.
    enum Relation {
        FineTune,
        Transfer,
        OnlineUpdate,
        Distillation,
        Merge,
        Quantization,
        Checkpoint,
        Other
    }

    /// @notice Life-cycle of a registered model. `None` means never registered.
    enum Status {
        None,
        Active,
        Revoked
    }

    /// @notice A typed link to a parent model.
    struct Parent {
        bytes32 id;
        Relation relation;
    }

    /// @notice What one registration commits to.
    /// @param certificateDigest sha-256 of the certificate's canonical bytes (also its raw CIDv1 digest).
    /// @param modelDigest root digest of the model artifact manifest.
    /// @param dataCommitment commitment to the exact training data (public root or salted commitment).
    /// @param parents parent models, strictly ascending by id (canonical order, no duplicates).
    /// @param acknowledgeRevokedParents set to accept parents that are already revoked; recorded.
    struct Registration {
        bytes32 certificateDigest;
        bytes32 modelDigest;
        bytes32 dataCommitment;
        Parent[] parents;
        bool acknowledgeRevokedParents;
    }

    /// @notice The on-chain record of a model: one storage slot.
    struct Record {
        address registrant;
        uint40 registeredAt;
        Status status;
        bool revokedParentAcknowledged;
    }

    /// @notice The Docker image a model's registrant bound to it last (all zero when none).
    /// @param imageId the image id: sha-256 of the image's config, which names every layer.
    /// @param recordDigest sha-256 of the image record (canonical JSON: image id, OCI layout
    ///        CID, model digest), stored in IPFS as one raw block, so its CIDv1 is
    ///        (raw codec, sha2-256, recordDigest): the digest is enough to fetch and check it.
    /// @param boundAt the block timestamp of the binding.
    struct ImageBinding {
        bytes32 imageId;
        bytes32 recordDigest;
        uint40 boundAt;
    }

    /// @notice A model was registered. The first parent (lowest id) rides in this event, so a
    ///         root or a single-parent model costs one log; every further parent gets a
    ///         ParentLinked log. Topics line up (topic1 = child, topic2 = parent), so one
    ///         `eth_getLogs` over both event signatures with topic2 = P lists P's children.
    /// @param firstParent the first parent's id, zero for a root model.
    /// @param firstRelation the first parent's relation (meaningless for a root model).
    event ModelRegistered(
        bytes32 indexed id,
        bytes32 indexed firstParent,
        address indexed registrant,
        bytes32 certificateDigest,
        bytes32 modelDigest,
        bytes32 dataCommitment,
        Relation firstRelation
    );

    /// @notice `child` was derived from `parent` (parents after the first).
    event ParentLinked(bytes32 indexed child, bytes32 indexed parent, Relation relation);

    /// @notice `id` was registered with `parent` already revoked, which its registrant acknowledged.
    event RevokedParentAcknowledged(bytes32 indexed id, bytes32 indexed parent);

    /// @notice A model was revoked, permanently.
    /// @param reasonDigest digest of the reason, e.g. of an incident report stored in IPFS.
    event ModelRevoked(bytes32 indexed id, address indexed revokedBy, bytes32 reasonDigest);

    /// @notice The registrant of `id` bound a Docker image to it. A later binding replaces it
    ///         (e.g. the same model on a patched base image); the history is these events.
    event ImageBound(bytes32 indexed id, bytes32 indexed imageId, bytes32 recordDigest);

    /// @notice The model is registered already (clients treat it as success when the content matches).
    error ModelAlreadyRegistered(bytes32 id);
    /// @notice No model is registered under `id`.
    error ModelNotFound(bytes32 id);
    /// @notice A parent is not registered.
    error ParentNotFound(bytes32 parentId);
    /// @notice A parent is revoked and the registration did not acknowledge it.
    error ParentRevoked(bytes32 parentId);
    /// @notice Parents must be strictly ascending by id; `index` is the first out of order.
    error ParentsNotCanonical(uint256 index);
    /// @notice A digest that must be set is zero.
    error ZeroDigest();
    /// @notice The registry is allowlisted and `account` holds no registrant role.
    error UnauthorizedRegistrant(address account);
    /// @notice `account` is neither the registrant of `id` nor an auditor.
    error UnauthorizedRevoker(bytes32 id, address account);
    /// @notice The model is revoked already.
    error AlreadyRevoked(bytes32 id);
    /// @notice A delegated registration's deadline has passed.
    error SignatureExpired(uint256 deadline);
    /// @notice A delegated registration's signature is not `registrant`'s.
    error InvalidSignature(address registrant);
    /// @notice A batch holds no registration.
    error EmptyBatch();
    /// @notice `account` is not the registrant of `id`, the only account that may bind its image.
    error UnauthorizedBinder(bytes32 id, address account);
    /// @notice `id` is revoked: no image may be bound to it any more.
    error ModelNotActive(bytes32 id);

    /// @notice Registers a model for the caller; its id binds the caller as registrant.
    function register(Registration calldata registration) external returns (bytes32 id);

    /// @notice Registers many models for the caller in one transaction; parents may be earlier entries.
    function registerBatch(Registration[] calldata registrations) external returns (bytes32[] memory ids);

    /// @notice Registers a model for `registrant`, who signed it as EIP-712 typed data; anyone may
    ///         submit. The id binds `registrant`, not the submitter.
    /// @dev Signed type: `Register(bytes32 certificateDigest,bytes32 modelDigest,bytes32 dataCommitment,
    ///      Parent[] parents,bool acknowledgeRevokedParents,address registrant,uint256 nonce,uint256 deadline)`
    ///      with `Parent(bytes32 id,uint8 relation)`. ERC-1271 wallets may sign.
    function registerFor(
        Registration calldata registration,
        address registrant,
        uint256 deadline,
        bytes calldata signature
    ) external returns (bytes32 id);

    /// @notice Revokes a model; only its registrant or an auditor may.
    function revoke(bytes32 id, bytes32 reasonDigest) external;

    /// @notice Binds a Docker image to a registered, active model; only its registrant may.
    ///         Rebinding replaces the binding (the ImageBound events keep the history).
    /// @dev Taint (a revoked ancestor) is a property of the family tree, found through events;
    ///      the contract does not walk ancestors, and verifiers and servers refuse tainted
    ///      models whatever image they have.
    /// @param imageId the image id (sha-256 of its config), non-zero.
    /// @param recordDigest sha-256 of the image record stored in IPFS as one raw block, non-zero.
    function bindImage(bytes32 id, bytes32 imageId, bytes32 recordDigest) external;

    /// @notice The latest image binding of `id` (all zero when none).
    function imageOf(bytes32 id) external view returns (ImageBinding memory);

    /// @notice The record of `id` (all zero when unknown).
    function recordOf(bytes32 id) external view returns (Record memory);

    /// @notice The status of `id`.
    function statusOf(bytes32 id) external view returns (Status);

    /// @notice The id `registration` gets when `registrant` registers it (directly or by signature).
    function computeId(Registration calldata registration, address registrant) external pure returns (bytes32);

    /// @notice The EIP-712 digest `registrant` signs for a delegated registration.
    function delegatedDigest(
        Registration calldata registration,
        address registrant,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32);

    /// @notice True when anyone may register; fixed at deployment.
    function openRegistration() external view returns (bool);
}
