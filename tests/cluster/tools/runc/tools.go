//go:build tools

// Package tools pins runc, the OCI runtime containerd's shim runs.
package tools

import _ "github.com/opencontainers/runc"
