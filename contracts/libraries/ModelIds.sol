// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IModelRegistry} from "../interfaces/IModelRegistry.sol";

/// @title ModelIds
/// @notice The model-id formula, in one place for the ModelRegistry (which assigns ids) and the
///         OutputAttestor (which proves a model digest against an id's pre-image).
/// @dev `id = keccak256(abi.encode(certificateDigest, modelDigest, dataCommitment, parentsHash, registrant))`
///      with `parentsHash = keccak256(abi.encode(parents))`. The registrant is part of the id so
///      that registering someone else's (public) certificate first yields an id bound to the
///      squatter, and leaves the creator's id free; see IModelRegistry.
library ModelIds {
    /// @notice The id of a model with this pre-image, registered by `registrant`.
    function compute(
        bytes32 certificateDigest,
        bytes32 modelDigest,
        bytes32 dataCommitment,
        bytes32 parentsHash_,
        address registrant
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(certificateDigest, modelDigest, dataCommitment, parentsHash_, registrant));
    }

    /// @notice `keccak256(abi.encode(parents))`, the parents' part of an id's pre-image.
    function parentsHash(IModelRegistry.Parent[] calldata parents) internal pure returns (bytes32) {
        return keccak256(abi.encode(parents));
    }
}
