package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/wire"
)

// maxSourceAddrs bounds how many loopback source addresses connections
// spread over (127.0.0.2 ... 127.0.0.(1+n)).
const maxSourceAddrs = 250

// dialer opens client WebSocket connections from a rotating set of
// loopback source addresses, so that more than one address's ~28k
// ephemeral ports are available. Safe for concurrent use.
type dialer struct {
	clients []*http.Client
	next    atomic.Uint64
}

func newDialer(sourceAddrs int) (*dialer, error) {
	if sourceAddrs < 1 || sourceAddrs > maxSourceAddrs {
		return nil, fmt.Errorf("source addresses must be within [1, %d], got %d", maxSourceAddrs, sourceAddrs)
	}
	d := &dialer{}
	for i := 0; i < sourceAddrs; i++ {
		ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
		nd := &net.Dialer{
			LocalAddr: &net.TCPAddr{IP: ip.AsSlice()},
			Timeout:   30 * time.Second,
			KeepAlive: -1, // idle held sockets need no TCP keepalive timers
		}
		tr := &http.Transport{
			DialContext:         nd.DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: -1,
			ForceAttemptHTTP2:   false,
		}
		d.clients = append(d.clients, &http.Client{Transport: tr})
	}
	return d, nil
}

// clientFor returns the HTTP client bound to source address i (mod n).
func (d *dialer) clientFor(i int) *http.Client { return d.clients[i%len(d.clients)] }

// dialOpts are the options of one client connection.
type dialOpts struct {
	token string // "" → no Authorization header
	index int    // picks the source address; -1 → round robin
}

// dial opens a WebSocket to u. For a Firegate URL the token goes in the
// Authorization header and the subprotocol firegate.v1 is offered.
func (d *dialer) dial(ctx context.Context, u string, o dialOpts) (*websocket.Conn, error) {
	i := o.index
	if i < 0 {
		i = int(d.next.Add(1))
	}
	h := http.Header{}
	if o.token != "" {
		h.Set("Authorization", "Bearer "+o.token)
	}
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:      d.clientFor(i),
		HTTPHeader:      h,
		Subprotocols:    []string{wire.Subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil {
			return nil, &httpRefusal{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), err: err}
		}
		return nil, err
	}
	c.SetReadLimit(16 << 20)
	return c, nil
}

// httpRefusal is a handshake refused with an HTTP status.
type httpRefusal struct {
	status     int
	retryAfter string
	err        error
}

func (e *httpRefusal) Error() string {
	return fmt.Sprintf("handshake refused with HTTP %d: %v", e.status, e.err)
}

func (e *httpRefusal) Unwrap() error { return e.err }

func refusalStatus(err error) int {
	var r *httpRefusal
	if errors.As(err, &r) {
		return r.status
	}
	return 0
}

func (d *dialer) close() {
	for _, c := range d.clients {
		c.CloseIdleConnections()
	}
}
