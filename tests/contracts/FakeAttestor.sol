// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice An attacker's "OutputAttestor", for tests: it emits whatever events it is told and
///         answers the views a verifier used to ask (authorizationOf, registry, statusOf) as
///         the real contract would for an authorised node of an active model. It checks nothing.
contract FakeAttestor {
    struct Authorization {
        bytes32 modelDigest;
        bytes32 imageId;
    }

    event NodeAuthorized(bytes32 indexed modelId, address indexed node, bytes32 modelDigest, bytes32 imageId);
    event NodeDeauthorized(bytes32 indexed modelId, address indexed node);
    event OutputsAttested(
        bytes32 indexed root,
        bytes32 indexed modelId,
        address indexed node,
        uint64 firstSequence,
        uint32 count,
        uint64 timestamp
    );

    mapping(bytes32 modelId => mapping(address node => Authorization)) private _authorizations;

    function authorize(bytes32 modelId, address node, bytes32 modelDigest) external {
        _authorizations[modelId][node] = Authorization({modelDigest: modelDigest, imageId: bytes32(0)});
        emit NodeAuthorized(modelId, node, modelDigest, bytes32(0));
    }

    function deauthorize(bytes32 modelId, address node) external {
        delete _authorizations[modelId][node];
        emit NodeDeauthorized(modelId, node);
    }

    function anchor(bytes32 root, bytes32 modelId, address node, uint64 firstSequence, uint32 count, uint64 timestamp)
        external
    {
        emit OutputsAttested(root, modelId, node, firstSequence, count, timestamp);
    }

    function authorizationOf(bytes32 modelId, address node) external view returns (Authorization memory) {
        return _authorizations[modelId][node];
    }

    /// @notice It names itself as the registry, and calls every model active.
    function registry() external view returns (address) {
        return address(this);
    }

    function statusOf(bytes32) external pure returns (uint8) {
        return 1;
    }
}
