// Command etcd for the kind tier's node image: the etcd release the pinned kubeadm expects.
//
// Why a second etcd: tools/etcd pins the release the test cluster runs (3.5), whose flags
// kubeadm 1.37's static Pod no longer matches (it passes --feature-gates, new in etcd 3.6).
// Why a wrapper: etcd's own main package cannot be built with `go build pkg@version`.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
