// Command etcd is etcd's server entry point built from the pinned module.
//
// Why a wrapper: etcd's own main package lives in a module with replace directives, so it
// cannot be built with `go build pkg@version`; calling etcdmain from our module sidesteps that.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
