// Command ferretdb serves the MongoDB wire protocol on SQLite: the test cluster's store.
//
// Why a wrapper: `go install` of FerretDB's own command panics at start because it expects
// build-time version files; the embeddable package needs none of them.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", ":27017", "TCP address to serve the MongoDB wire protocol on")
	dir := flag.String("state-dir", "/state", "directory holding the SQLite databases")
	flag.Parse()

	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		// Hundreds of tasks write at once in a fan-out: a busy writer waits up to 30 s (FerretDB's
		// default is 10 s), and in WAL mode a commit does not wait for fsync (synchronous(normal):
		// still safe against corruption; only an OS crash can lose the last commits), which under
		// the disk load of many starting containers held the write lock for seconds.
		// (_txlock=immediate was tried: under 5,000 tasks the store stopped answering reads.)
		SQLiteURL: "file:" + *dir + "/?_pragma=busy_timeout(30000)&_pragma=synchronous(normal)",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Printf("ferretdb listening on %s, state in %s", *listen, *dir)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
