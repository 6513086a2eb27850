package app

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// devNATS is the NATS server `firegate dev --nats` embeds: JetStream on a
// temporary directory, loopback only, a free port.
type devNATS struct {
	srv *server.Server
	dir string
}

// startDevNATS starts the embedded NATS server; Stop removes its data.
func startDevNATS() (*devNATS, error) {
	dir, err := os.MkdirTemp("", "firegate-dev-nats-")
	if err != nil {
		return nil, fmt.Errorf("failed to create the NATS data directory: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "firegate-dev", Host: "127.0.0.1", Port: server.RANDOM_PORT,
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
	return &devNATS{srv: srv, dir: dir}, nil
}

// URL is the client URL (nats://127.0.0.1:PORT).
func (d *devNATS) URL() string { return d.srv.ClientURL() }

// Stop shuts the server down and removes its data directory.
func (d *devNATS) Stop() {
	d.srv.Shutdown()
	d.srv.WaitForShutdown()
	_ = os.RemoveAll(d.dir)
}
