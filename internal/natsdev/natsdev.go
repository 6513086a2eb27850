// Package natsdev starts an embedded NATS server for trying fleet mode
// (`firegate dev --nats`) and for the load tool's `--nats`: JetStream on a
// temporary directory, loopback only, a free port. Never for production.
package natsdev

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a running embedded NATS server. Stop it exactly once.
type Server struct {
	srv *server.Server
	dir string
}

// Start starts a server named name (it also names the data directory) and
// waits until it accepts connections.
func Start(name string) (*Server, error) {
	dir, err := os.MkdirTemp("", name+"-nats-")
	if err != nil {
		return nil, fmt.Errorf("failed to create the NATS data directory: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: name, Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("failed to configure the embedded NATS server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		_ = os.RemoveAll(dir)
		return nil, errors.New("the embedded NATS server did not start within 10s")
	}
	return &Server{srv: srv, dir: dir}, nil
}

// URL is the client URL (nats://127.0.0.1:PORT).
func (s *Server) URL() string { return s.srv.ClientURL() }

// Stop shuts the server down and removes its data directory.
func (s *Server) Stop() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	_ = os.RemoveAll(s.dir)
}
