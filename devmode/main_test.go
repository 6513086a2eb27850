package devmode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/emulator/emulatortest"
)

// emu is the one Firestore emulator of this test binary, started on first
// use. Tests isolate their data with their own project id.
var (
	emu        emulatortest.Shared
	emuEnvOnce sync.Once
	projectSeq atomic.Int64

	issuerOnce sync.Once
	issuer     *authz.DevIssuer
	issuerErr  error
)

const testIssuer = "http://127.0.0.1:8080"

func TestMain(m *testing.M) {
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

// testDevIssuer returns the package's dev issuer (RSA key generation is slow).
func testDevIssuer(t testing.TB) *authz.DevIssuer {
	t.Helper()
	issuerOnce.Do(func() { issuer, issuerErr = authz.NewDevIssuer(testIssuer) })
	if issuerErr != nil {
		t.Fatal(issuerErr)
	}
	return issuer
}

// testClient returns a Firestore client on a fresh project of the shared
// emulator (FIRESTORE_EMULATOR_HOST is set once, process-wide).
func testClient(t testing.TB) *firestore.Client {
	t.Helper()
	e := emu.Get(t)
	emuEnvOnce.Do(func() { _ = os.Setenv("FIRESTORE_EMULATOR_HOST", e.Host) })
	project := fmt.Sprintf("fg-devmode-%d", projectSeq.Add(1))
	c, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testHandler returns a DevHandler on a fresh project with a fixed clock.
func testHandler(t testing.TB) (*DevHandler, *firestore.Client) {
	t.Helper()
	c := testClient(t)
	h, err := Handler(Config{Issuer: testDevIssuer(t), Client: c, Azp: "http://127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, c
}

// loopbackReq builds a request as a local browser sends it.
func loopbackReq(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = "127.0.0.1:50000"
	r.Host = "127.0.0.1:8080"
	return r
}

// do serves a loopback request and returns the recorder.
func do(t testing.TB, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := loopbackReq(method, target, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decode unmarshals a JSON response body into v.
func decode(t testing.TB, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type = %q, want JSON", ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("bad JSON %q: %v", w.Body.String(), err)
	}
}

// errorOf returns the "error" of a JSON error response.
func errorOf(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e errorBody
	decode(t, w, &e)
	if e.Error == "" {
		t.Fatalf("error response without error: %s", w.Body.String())
	}
	return e.Error
}

// simGoroutines is a condition: n simulation goroutines run.
func simGoroutines(n int) func() error {
	return func() error {
		if got := goroutinesWith("devmode.(*DevHandler).runSimulation"); got != n {
			return fmt.Errorf("%d simulation goroutines, want %d", got, n)
		}
		return nil
	}
}

// goroutinesWith counts the goroutines whose stack mentions fn.
func goroutinesWith(fn string) int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for g := range bytes.SplitSeq(buf[:n], []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn)) {
			count++
		}
	}
	return count
}
