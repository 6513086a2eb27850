package natsdev

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStartServesJetStreamOnLoopbackAndStopCleansUp(t *testing.T) {
	ns, err := Start("natsdev-test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ns.URL(), "nats://127.0.0.1:") {
		t.Errorf("URL %q is not on loopback", ns.URL())
	}
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream not enabled: %v", err)
	}
	nc.Close()
	dir := ns.dir
	ns.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data directory %s left behind (%v)", dir, err)
	}
}
