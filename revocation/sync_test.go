package revocation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/internal/emulator/emulatortest"
	"github.com/firegate/firegate/internal/testkit"
)

var (
	emu     emulatortest.Shared
	envOnce sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

func testClient(t *testing.T) *firestore.Client {
	t.Helper()
	e := emu.Get(t)
	envOnce.Do(func() { _ = os.Setenv("FIRESTORE_EMULATOR_HOST", e.Host) })
	c, err := firestore.NewClient(context.Background(), "firegate-revocation-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func uniqColl(t *testing.T) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return "revocations_" + hex.EncodeToString(b)
}

// waitFor is testkit.CheckFor naming what it waits for.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	testkit.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if err := cond(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		return nil
	})
}

// instance is one gateway instance's revocation side: its Store and Sync.
func instance(t *testing.T, client *firestore.Client, coll string) (*Store, *Sync) {
	t.Helper()
	s, err := NewStore(Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	y, err := NewSync(client, s, SyncConfig{Collection: coll, SweepInterval: -1, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = y.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, y
}

// TestSyncSharesRevocationsAcrossInstances: a revocation published by one
// instance reaches another instance's Store, and one that starts later
// reads the live entries at start.
func TestSyncSharesRevocationsAcrossInstances(t *testing.T) {
	client := testClient(t)
	coll := uniqColl(t)
	a, ya := instance(t, client, coll)
	b, yb := instance(t, client, coll)
	<-ya.Synced()
	<-yb.Synced()
	at := time.Now().UTC().Truncate(time.Second) // a token's iat has second precision
	r := Revocation{Kind: KindMembership, ID: "user_1", OrgID: "org_1", At: at}
	if err := ya.Publish(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"publisher": a, "other": b} {
		waitFor(t, name+" store has the revocation", func() error {
			if _, ok := s.Org("user_1", "org_1", at); !ok {
				return fmt.Errorf("not revoked yet")
			}
			return nil
		})
	}
	late, yl := instance(t, client, coll)
	<-yl.Synced()
	if _, ok := late.Org("user_1", "org_1", at); !ok {
		t.Fatal("an instance started later did not read the live revocation")
	}
}

// TestSyncSweepDeletesExpiredEntries: expired entries are deleted, live
// ones stay.
func TestSyncSweepDeletesExpiredEntries(t *testing.T) {
	client := testClient(t)
	coll := uniqColl(t)
	now := time.Now().UTC()
	s, err := NewStore(Config{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	y, err := NewSync(client, s, SyncConfig{Collection: coll, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := Revocation{Kind: KindSession, ID: "old", At: now.Add(-2 * time.Minute)}
	live := Revocation{Kind: KindSession, ID: "live", At: now}
	for _, r := range []Revocation{old, live} {
		if err := y.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	n, err := y.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 deleted", n, err)
	}
	docs, err := client.Collection(coll).Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0].Ref.ID != DocID(live) {
		t.Fatalf("left %d entries, want only the live one", len(docs))
	}
}

// TestSyncIgnoresMalformedEntries: a malformed document in the collection
// is skipped; the listener keeps applying valid ones.
func TestSyncIgnoresMalformedEntries(t *testing.T) {
	client := testClient(t)
	coll := uniqColl(t)
	ctx := context.Background()
	if _, err := client.Collection(coll).Doc("bad").Set(ctx, map[string]any{"kind": "session", "id": 42, "expires": time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s, y := instance(t, client, coll)
	<-y.Synced()
	at := time.Now().UTC().Truncate(time.Second) // a token's iat has second precision
	if err := y.Publish(ctx, Revocation{Kind: KindUser, ID: "user_2", At: at}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "valid entry after a malformed one", func() error {
		if _, ok := s.Session("user_2", "s", at); !ok {
			return fmt.Errorf("not revoked yet")
		}
		return nil
	})
	if s.Len() != 1 {
		t.Fatalf("store holds %d entries, want 1", s.Len())
	}
}
