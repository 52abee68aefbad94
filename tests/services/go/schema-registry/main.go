// Command schema-registry serves Conduit Schema Registry (github.com/conduitio/conduit-schema-registry,
// a Go implementation of the Confluent Schema Registry REST API) on 127.0.0.1, with its in-memory
// store, for arrowflow's integration tests. Started by tests/services/schema-registry.sh.
package main

import (
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/conduitio/conduit-commons/database/inmemory"
	schemaregistry "github.com/conduitio/conduit-schema-registry"
)

func main() {
	port := flag.Int("port", 8081, "TCP port to listen on (127.0.0.1 only)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	registry, err := schemaregistry.NewSchemaRegistry(&inmemory.DB{})
	if err != nil {
		logger.Error("cannot create the schema registry", "error", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	schemaregistry.NewServer(logger, registry).RegisterHandlers(mux)

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	logger.Info("listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		logger.Error("server stopped", "error", err)
		os.Exit(1)
	}
}
