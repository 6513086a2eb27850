package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/wire"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// firegateBinary builds cmd/firegate once per test binary.
func firegateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "firegate-fleet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "firegate")
		out, err := exec.Command("go", "build", "-o", builtBin, "github.com/firegate/firegate/cmd/firegate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one `firegate serve` process.
type proc struct {
	name        string
	cmd         *exec.Cmd
	addr, admin string
	out         *syncBuffer
	done        chan struct{}
}

func startServe(t *testing.T, name string, env []string) *proc {
	t.Helper()
	p := &proc{
		name: name, out: &syncBuffer{}, done: make(chan struct{}),
		addr:  "127.0.0.1:" + strconv.Itoa(freePort(t)),
		admin: "127.0.0.1:" + strconv.Itoa(freePort(t)),
	}
	p.cmd = exec.Command(firegateBinary(t), "serve")
	p.cmd.Env = append(append(os.Environ(), env...), "FIREGATE_ADDR="+p.addr, "FIREGATE_ADMIN_ADDR="+p.admin)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.out.String())
		}
	})
	testkit.CheckFor(t, wait, poll, about(name+" ready", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited:\n%s", name, p.out.String())
		default:
		}
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	}))
	return p
}

// readyz returns /readyz's status and body.
func (p *proc) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatalf("%s /readyz: %v", p.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of the series whose line starts with series
// (name plus label set, exactly as /metrics prints it), or 0.
func (p *proc) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", p.name, line, err)
			}
			return v
		}
	}
	return 0
}

func sumMetric(t *testing.T, ps []*proc, series string) float64 {
	t.Helper()
	s := 0.0
	for _, p := range ps {
		s += p.metric(t, series)
	}
	return s
}

// wsClient is a WebSocket client of one process, feeding a client view.
type wsClient struct {
	*client
	conn *websocket.Conn
}

func dialWS(t *testing.T, p *proc, name, token string, resume *wire.Resume, seed func(*client)) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/v1/stream", &websocket.DialOptions{
		Subprotocols: []string{"firegate.v1"},
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, p.name, err)
	}
	conn.SetReadLimit(4 << 20)
	w := &wsClient{client: newClient(name), conn: conn}
	if seed != nil {
		seed(w.client) // what a resuming client holds
	}
	go func() {
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			w.apply(data)
		}
	}()
	t.Cleanup(func() { _ = conn.CloseNow() })
	msg := map[string]any{"type": "subscribe", "id": name, "collection": "tasks"}
	if resume != nil {
		msg["resume"] = resume
	}
	b, _ := json.Marshal(msg)
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("%s: subscribe: %v", name, err)
	}
	return w
}

// Three `firegate serve` processes on one NATS and one emulator: clients
// of one org spread over all three share one Firestore listener and get
// every change; SIGKILL of the owner hands the Feed to another process
// within the lease time and clients see `changes` only, seq continuous; a
// client of the killed process resumes on another one (resumed: true, the
// net change); a SIGTERM drain hands the lease over.
func TestThreeServeProcesses(t *testing.T) {
	project := testProject(t)
	ns := startNATS(t)
	st := newStore(t, project)
	iss, err := authz.NewDevIssuer("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("collections:\n  - path: tasks\n    scope: org\n    scope_field: org_id\n    allow: \"true\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"FIREGATE_POLICY=" + policy, "CLERK_JWT_KEY=" + iss.PublicKeyPEM(), "CLERK_ISSUER=" + iss.Issuer(),
		"FIREGATE_ALLOW_MISSING_AZP=true", "FIRESTORE_PROJECT_ID=" + project,
		"FIREGATE_NATS_URL=" + ns.url(), "FIREGATE_NATS_LEASE_TTL=1500ms", "FIREGATE_DRAIN_TIMEOUT=1s",
		"FIREGATE_LOG_LEVEL=warn",
	}
	st.set("t1", task("org_a", "one", 1))
	st.set("x1", task("org_b", "not ours", 1))

	var ps []*proc
	for i := range 3 {
		p := startServe(t, fmt.Sprintf("gw%d", i), env)
		if code, body := p.readyz(t); code != http.StatusOK || !strings.Contains(body, "fleet: connected") {
			t.Fatalf("%s /readyz = %d %q, want 200 with the fleet status", p.name, code, body)
		}
		ps = append(ps, p)
	}
	token := func(user string) string {
		tok, err := iss.Mint(authz.MintOptions{UserID: user, OrgID: "org_a", OrgRole: "org:member", TTL: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var cs []*wsClient
	clientsOf := map[*proc][]*wsClient{}
	for i, p := range ps {
		for j := range 2 {
			c := dialWS(t, p, fmt.Sprintf("c%d%d", i, j), token(fmt.Sprintf("user_%d%d", i, j)), nil, nil)
			cs = append(cs, c)
			clientsOf[p] = append(clientsOf[p], c)
		}
	}
	views := func(ws []*wsClient) []*client {
		var out []*client
		for _, w := range ws {
			out = append(out, w.client)
		}
		return out
	}
	converged(t, "initial result on every process", st.fresh("org_a"), views(cs)...)
	st.set("t2", task("org_a", "two", 2))
	st.set("t1", task("org_a", "one, edited", 3))
	converged(t, "every change on every process", st.fresh("org_a"), views(cs)...)

	if got := sumMetric(t, ps, "firegate_listeners_started_total"); got != 1 {
		t.Fatalf("Firestore listeners started over the three processes = %v, want 1", got)
	}
	var owner *proc
	testkit.CheckFor(t, wait, poll, about("one owner", func() error {
		owner = nil
		for _, p := range ps {
			if p.metric(t, `firegate_fleet_feeds{role="owned"}`) == 1 {
				owner = p
			}
		}
		if got := sumMetric(t, ps, `firegate_fleet_feeds{role="owned"}`); got != 1 || owner == nil {
			return fmt.Errorf("%v owners", got)
		}
		return nil
	}))

	// SIGKILL the owner.
	var rest []*proc
	var restClients []*wsClient
	for _, p := range ps {
		if p != owner {
			rest = append(rest, p)
			restClients = append(restClients, clientsOf[p]...)
		}
	}
	gone := clientsOf[owner][0]
	goneEpoch, goneSeq, goneDocs, _ := gone.state()
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-owner.done
	st.set("t2", task("org_a", "two, while ownerless", 4))
	st.del("t1")
	st.set("t3", task("org_a", "three", 5))
	want := st.fresh("org_a")
	converged(t, "survivors after the owner's SIGKILL", want, views(restClients)...)
	testkit.CheckFor(t, wait, poll, about("a survivor owns the Feed", func() error {
		if got := sumMetric(t, rest, `firegate_fleet_feeds{role="owned"}`); got != 1 {
			return fmt.Errorf("%v owners", got)
		}
		return nil
	}))
	for _, c := range restClients {
		e, _, _, problems := c.state()
		if e != goneEpoch || len(problems) > 0 || len(c.framesOf(wire.TypeSnapshot)) != 1 {
			t.Errorf("%s: epoch %s (want %s), problems %v, %d snapshots (want 1)", c.name, e, goneEpoch, problems, len(c.framesOf(wire.TypeSnapshot)))
		}
	}

	// The killed process's client resumes on a survivor.
	back := dialWS(t, rest[0], "back", token("user_back"), &wire.Resume{Epoch: goneEpoch, Seq: goneSeq}, func(c *client) {
		c.docs, c.seq = goneDocs, goneSeq
	})
	converged(t, "the resumed client", want, back.client)
	subs := back.framesOf(wire.TypeSubscribed)
	if len(subs) != 1 || !subs[0].Resumed || len(back.framesOf(wire.TypeSnapshot)) != 0 {
		t.Errorf("resume on another process: subscribed %+v, %d snapshots; want resumed:true and none", subs, len(back.framesOf(wire.TypeSnapshot)))
	}

	// SIGTERM drain of the new owner hands the lease to the last process.
	var newOwner, last *proc
	for _, p := range rest {
		if p.metric(t, `firegate_fleet_feeds{role="owned"}`) == 1 {
			newOwner = p
		} else {
			last = p
		}
	}
	if newOwner == nil || last == nil {
		t.Fatal("no single owner among the survivors")
	}
	if err := newOwner.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-newOwner.done
	if newOwner.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("drained process exited %d", newOwner.cmd.ProcessState.ExitCode())
	}
	testkit.CheckFor(t, wait, poll, about("the last process owns the Feed", func() error {
		if got := last.metric(t, `firegate_fleet_feeds{role="owned"}`); got != 1 {
			return fmt.Errorf("owned = %v", got)
		}
		return nil
	}))
	st.set("t4", task("org_a", "four", 6))
	converged(t, "the last process's clients after the drain", st.fresh("org_a"), views(clientsOf[last])...)
	for _, c := range clientsOf[last] {
		if _, _, _, problems := c.state(); len(problems) > 0 || len(c.framesOf(wire.TypeSnapshot)) != 1 {
			t.Errorf("%s: problems %v, %d snapshots", c.name, problems, len(c.framesOf(wire.TypeSnapshot)))
		}
	}

	// NATS killed: the last process goes degraded (still ready, says so),
	// its clients keep getting changes; NATS back: it owns the Feed again.
	for _, c := range clientsOf[last] {
		c.mu.Lock()
		c.jumps = true // a degraded Feed moves its seq ahead once
		c.mu.Unlock()
	}
	ns.stop()
	testkit.CheckFor(t, wait, poll, about("degraded", func() error {
		code, body := last.readyz(t)
		if code != http.StatusOK || !strings.Contains(body, "degraded") {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		if last.metric(t, "firegate_fleet_degraded") != 1 {
			return fmt.Errorf("firegate_fleet_degraded is not 1")
		}
		return nil
	}))
	st.set("t5", task("org_a", "five, NATS down", 7))
	converged(t, "delivery while degraded", st.fresh("org_a"), views(clientsOf[last])...)
	ns.start()
	testkit.CheckFor(t, wait, poll, about("back in the fleet", func() error {
		code, body := last.readyz(t)
		if code != http.StatusOK || !strings.Contains(body, "fleet: connected") {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		if last.metric(t, `firegate_fleet_feeds{role="owned"}`) != 1 || last.metric(t, `firegate_fleet_feeds{role="local"}`) != 0 {
			return fmt.Errorf("not the owner again")
		}
		return nil
	}))
	st.set("t6", task("org_a", "six, NATS back", 8))
	converged(t, "delivery after NATS returned", st.fresh("org_a"), views(clientsOf[last])...)
	for _, c := range clientsOf[last] {
		if n := len(c.framesOf(wire.TypeSnapshot)); n != 1 {
			t.Errorf("%s: %d snapshots, want 1", c.name, n)
		}
	}
}
