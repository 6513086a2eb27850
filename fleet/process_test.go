package fleet

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/firegate/firegate/webhooks"
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

// proc is one `firegate serve` process.
type proc struct {
	name        string
	cmd         *exec.Cmd
	addr, admin string
	out         *testkit.LockedBuffer
	done        chan struct{}
}

func startServe(t *testing.T, name string, env []string) *proc {
	t.Helper()
	p := &proc{
		name: name, out: &testkit.LockedBuffer{}, done: make(chan struct{}),
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

// currentListeners counts the Firestore listeners of p that delivered their
// first snapshot in the role ("owned" or "local") since p started, from
// its log (msgListenerCurrent). A test that writes right after a Feed
// changed role waits for this to grow first: the emulator can drop a write
// committed while a listener is being added (see listenWatch).
func (p *proc) currentListeners(role string) int {
	n := 0
	for _, line := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(line, `"msg":"`+msgListenerCurrent+`"`) && strings.Contains(line, `"role":"`+role+`"`) {
			n++
		}
	}
	return n
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
// closed is closed when the connection ends; closeErr (set before) is the
// read error that ended it, a websocket.CloseError when the server closed
// it with a close frame.
type wsClient struct {
	*client
	conn     *websocket.Conn
	closed   chan struct{}
	closeErr error
}

// closeStatus returns the close code and reason the server sent, or an
// error if the connection is still open or ended without a close frame.
func (w *wsClient) closeStatus() (websocket.StatusCode, string, error) {
	select {
	case <-w.closed:
	default:
		return 0, "", errors.New("still open")
	}
	var ce websocket.CloseError
	if !errors.As(w.closeErr, &ce) {
		return 0, "", fmt.Errorf("ended without a close frame: %v", w.closeErr)
	}
	return ce.Code, ce.Reason, nil
}

// dialWS connects to p with token and subscribes to tasks (resuming from
// resume when set; seed sets what a resuming client holds).
func dialWS(t *testing.T, p *proc, name, token string, resume *wire.Resume, seed func(*client)) *wsClient {
	t.Helper()
	w := connectWS(t, p, name, token, seed)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	msg := map[string]any{"type": "subscribe", "id": name, "collection": "tasks"}
	if resume != nil {
		msg["resume"] = resume
	}
	b, _ := json.Marshal(msg)
	if err := w.conn.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("%s: subscribe: %v", name, err)
	}
	return w
}

// connectWS opens a WebSocket to p with token and reads what the server
// sends into the client view, sending nothing.
func connectWS(t *testing.T, p *proc, name, token string, seed func(*client)) *wsClient {
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
	w := &wsClient{client: newClient(name), conn: conn, closed: make(chan struct{})}
	if seed != nil {
		seed(w.client) // what a resuming client holds
	}
	go func() {
		defer close(w.closed)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				w.closeErr = err
				return
			}
			w.apply(data)
		}
	}()
	t.Cleanup(func() {
		_ = conn.CloseNow()
		if t.Failed() {
			t.Logf("%s on %s: %s", name, p.name, w.summary())
		}
	})
	return w
}

// fleetWebhookSecret is the Clerk (Svix) webhook signing secret of the
// processes startServeFleet starts.
const fleetWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// serveFleet is n `firegate serve` processes on one embedded nats-server
// and one emulator project: policy "tasks" scoped by org_id, tokens from a
// dev issuer, Clerk webhooks at /v1/webhooks/clerk, a 1.5 s lease TTL.
type serveFleet struct {
	ns  *natsServer
	st  *store
	iss *authz.DevIssuer
	ps  []*proc
}

func startServeFleet(t *testing.T, n int) *serveFleet {
	t.Helper()
	project := testProject(t)
	f := &serveFleet{ns: startNATS(t), st: newStore(t, project)}
	var err error
	f.iss, err = authz.NewDevIssuer("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("collections:\n  - path: tasks\n    scope: org\n    scope_field: org_id\n    allow: \"true\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"FIREGATE_POLICY=" + policy, "CLERK_JWT_KEY=" + f.iss.PublicKeyPEM(), "CLERK_ISSUER=" + f.iss.Issuer(),
		"FIREGATE_ALLOW_MISSING_AZP=true", "FIRESTORE_PROJECT_ID=" + project,
		"FIREGATE_NATS_URL=" + f.ns.url(), "FIREGATE_NATS_LEASE_TTL=1500ms", "FIREGATE_DRAIN_TIMEOUT=1s",
		"CLERK_WEBHOOK_SECRET=" + fleetWebhookSecret, "FIREGATE_LOG_LEVEL=info", // role changes (currentListeners)
	}
	for i := range n {
		p := startServe(t, fmt.Sprintf("gw%d", i), env)
		if code, body := p.readyz(t); code != http.StatusOK || !strings.Contains(body, "fleet: connected") {
			t.Fatalf("%s /readyz = %d %q, want 200 with the fleet status", p.name, code, body)
		}
		f.ps = append(f.ps, p)
	}
	return f
}

// token mints a token of user, a member of org_a, for session sid ("": a
// random one).
func (f *serveFleet) token(t *testing.T, user, sid string) string {
	t.Helper()
	tok, err := f.iss.Mint(authz.MintOptions{UserID: user, SessionID: sid, OrgID: "org_a", OrgRole: "org:member", TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// postClerkWebhook delivers a Clerk event to p's webhook endpoint as Svix
// does (signed with fleetWebhookSecret) and returns the status.
func postClerkWebhook(t *testing.T, p *proc, id, body string) int {
	t.Helper()
	ts := time.Now()
	sig, err := webhooks.Sign(fleetWebhookSecret, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+p.addr+"/v1/webhooks/clerk", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webhook to %s: %v", p.name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func views(ws []*wsClient) []*client {
	var out []*client
	for _, w := range ws {
		out = append(out, w.client)
	}
	return out
}

// Three `firegate serve` processes on one NATS and one emulator: clients
// of one org spread over all three share one Firestore listener and get
// every change; SIGKILL of the owner hands the Feed to another process
// within the lease time and clients see `changes` only, seq continuous; a
// client of the killed process resumes on another one (resumed: true, the
// net change); a SIGTERM drain hands the lease over.
func TestThreeServeProcesses(t *testing.T) {
	f := startServeFleet(t, 3)
	ns, st, ps := f.ns, f.st, f.ps
	st.set("t1", task("org_a", "one", 1))
	st.set("x1", task("org_b", "not ours", 1))
	token := func(user string) string { return f.token(t, user, "") }
	var cs []*wsClient
	clientsOf := map[*proc][]*wsClient{}
	for i, p := range ps {
		for j := range 2 {
			c := dialWS(t, p, fmt.Sprintf("c%d%d", i, j), token(fmt.Sprintf("user_%d%d", i, j)), nil, nil)
			cs = append(cs, c)
			clientsOf[p] = append(clientsOf[p], c)
		}
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
	lastOwned := last.currentListeners("owned")
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
		if last.currentListeners("owned") == lastOwned {
			return errors.New("its listener has not delivered its first snapshot")
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
	lastLocal := last.currentListeners("local")
	ns.stop()
	testkit.CheckFor(t, wait, poll, about("degraded", func() error {
		code, body := last.readyz(t)
		if code != http.StatusOK || !strings.Contains(body, "degraded") {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		if last.metric(t, "firegate_fleet_degraded") != 1 {
			return fmt.Errorf("firegate_fleet_degraded is not 1")
		}
		if last.currentListeners("local") == lastLocal {
			return errors.New("no local listener has delivered its first snapshot")
		}
		return nil
	}))
	st.set("t5", task("org_a", "five, NATS down", 7))
	converged(t, "delivery while degraded", st.fresh("org_a"), views(clientsOf[last])...)
	lastOwned = last.currentListeners("owned")
	ns.start()
	testkit.CheckFor(t, wait, poll, about("back in the fleet", func() error {
		code, body := last.readyz(t)
		if code != http.StatusOK || !strings.Contains(body, "fleet: connected") {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		if last.metric(t, `firegate_fleet_feeds{role="owned"}`) != 1 || last.metric(t, `firegate_fleet_feeds{role="local"}`) != 0 {
			return fmt.Errorf("not the owner again")
		}
		if last.currentListeners("owned") == lastOwned {
			return errors.New("its listener has not delivered its first snapshot")
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

// A revocation posted to one of three `firegate serve` processes, the way
// Clerk posts it (a signed user.deleted webhook to that process alone),
// ends the user's sessions on all three: each of the user's connections,
// one per process and each its own session, is closed with 4001 "session
// revoked", and the user's earlier token is refused at the handshake on
// every process. Another user's connections on the three stay open and
// keep getting changes.
func TestRevocationEndsSessionsOnThreeProcesses(t *testing.T) {
	f := startServeFleet(t, 3)
	f.st.set("t1", task("org_a", "one", 1))
	var victims, bystanders []*wsClient
	for i, p := range f.ps {
		victims = append(victims, dialWS(t, p, fmt.Sprintf("victim%d", i), f.token(t, "user_victim", fmt.Sprintf("sess_victim_%d", i)), nil, nil))
		bystanders = append(bystanders, dialWS(t, p, fmt.Sprintf("bystander%d", i), f.token(t, "user_bystander", fmt.Sprintf("sess_bystander_%d", i)), nil, nil))
	}
	victimToken := f.token(t, "user_victim", "sess_victim_later")
	converged(t, "every client subscribed", f.st.fresh("org_a"), views(append(append([]*wsClient(nil), victims...), bystanders...))...)

	if code := postClerkWebhook(t, f.ps[0], "msg_user_deleted", `{"type":"user.deleted","data":{"id":"user_victim"}}`); code != http.StatusNoContent {
		t.Fatalf("webhook to %s: status %d, want %d", f.ps[0].name, code, http.StatusNoContent)
	}
	testkit.CheckFor(t, wait, poll, about("the user's connections closed on every process", func() error {
		for _, v := range victims {
			if _, _, err := v.closeStatus(); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
		}
		return nil
	}))
	for i, v := range victims {
		code, reason, _ := v.closeStatus()
		if code != wire.CloseUnauthenticated || reason != "session revoked" {
			t.Errorf("%s on %s: closed %d %q, want %d %q", v.name, f.ps[i].name, code, reason, wire.CloseUnauthenticated, "session revoked")
		}
	}

	// The user's token from before the revocation, on a new connection to
	// each process: refused at the handshake.
	for _, p := range f.ps {
		again := connectWS(t, p, "victim_again_"+p.name, victimToken, nil)
		testkit.CheckFor(t, wait, poll, about(p.name+" refuses the revoked user", func() error {
			_, _, err := again.closeStatus()
			return err
		}))
		if code, reason, _ := again.closeStatus(); code != wire.CloseUnauthenticated || reason != "session revoked" {
			t.Errorf("revoked user's new connection to %s: closed %d %q, want %d %q", p.name, code, reason, wire.CloseUnauthenticated, "session revoked")
		}
		if n := len(again.framesOf(wire.TypeWelcome)); n != 0 {
			t.Errorf("revoked user's new connection to %s was welcomed", p.name)
		}
	}

	// The other user is untouched on every process.
	f.st.set("t2", task("org_a", "two, after the revocation", 2))
	converged(t, "the other user's clients after the revocation", f.st.fresh("org_a"), views(bystanders)...)
	for _, b := range bystanders {
		select {
		case <-b.closed:
			t.Errorf("%s ended after another user's revocation: %v", b.name, b.closeErr)
		default:
		}
	}
}
