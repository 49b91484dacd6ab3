//go:build tools

// Package tools pins the kubo IPFS node that provenance builds into .tools/bin.
// `go install github.com/ipfs/kubo/cmd/ipfs@vX` refuses kubo releases whose go.mod
// carries exclude directives; building it from this module works and go.sum pins
// every dependency hash.
package tools

import _ "github.com/ipfs/kubo/cmd/ipfs"
