// Command ferretdb serves the MongoDB wire protocol on SQLite: the test cluster's store.
//
// Why a wrapper: `go install` of FerretDB's own command panics at start because it expects
// build-time version files; the embeddable package needs none of them. And it keeps an index
// FerretDB's SQLite backend needs but does not make (see keepIDIndexes).
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	_ "modernc.org/sqlite" // the driver FerretDB itself uses, registered as "sqlite"
)

// idIndexPeriod is how soon a new collection gets its _id index.
const idIndexPeriod = 2 * time.Second

func main() {
	listen := flag.String("listen-addr", ":27017", "TCP address to serve the MongoDB wire protocol on")
	dir := flag.String("state-dir", "/state", "directory holding the SQLite databases")
	flag.Parse()

	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Handler:  "sqlite",
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
	go keepIDIndexes(ctx, *dir)
	log.Printf("ferretdb listening on %s, state in %s", *listen, *dir)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// keepIDIndexes gives every collection's table an index on the very expression FerretDB (1.24)
// looks documents up by: `_ferretdb_sjson->'$._id'`. FerretDB indexes _id as
// `_ferretdb_sjson->"_id"`, which SQLite does not take for the same expression (an index on an
// expression serves only queries that spell it the same way), so without this every lookup by
// _id (each status update, each upsert) parsed every document of the collection: at a few
// thousand task records the store spent a core on it and answered reads in tens of seconds.
// The index is SQLite's alone: FerretDB neither lists nor manages it, and it goes with its table.
func keepIDIndexes(ctx context.Context, dir string) {
	done := map[string]bool{}
	tick := time.NewTicker(idIndexPeriod)
	defer tick.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, file := range files {
			if err := indexTables(ctx, file, done); err != nil {
				log.Printf("levrt: _id indexes of %s: %v (tried again in %s)", file, err, idIndexPeriod)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func indexTables(ctx context.Context, file string, done map[string]bool) error {
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, table)
	}
	rows.Close()
	for _, table := range tables {
		key := file + "\x00" + table
		if done[key] {
			continue
		}
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, table+"_levrt_id", table)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
		done[key] = true
	}
	return nil
}
