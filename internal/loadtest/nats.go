package loadtest

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedNATS is the NATS server --nats starts: JetStream on a temporary
// directory, loopback only, a free port.
type embeddedNATS struct {
	srv *server.Server
	dir string
}

func startNATS() (*embeddedNATS, error) {
	dir, err := os.MkdirTemp("", "firegate-loadtest-nats-")
	if err != nil {
		return nil, fmt.Errorf("failed to create the NATS data directory: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "firegate-loadtest", Host: "127.0.0.1", Port: server.RANDOM_PORT,
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
	return &embeddedNATS{srv: srv, dir: dir}, nil
}

func (n *embeddedNATS) url() string { return n.srv.ClientURL() }

func (n *embeddedNATS) stop() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	_ = os.RemoveAll(n.dir)
}
