package egress

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flood answers with status and up to 100 MiB, counting what it managed
// to write.
func flood(status int, written *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		chunk := []byte(strings.Repeat("A", 32<<10))
		for i := 0; i < 100<<20/len(chunk); i++ {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}
}

// TestBodyCapped: a 100 MiB answer is read to 64 KiB and then fails with
// ErrBodyTooLarge, carrying the status; the server gets to write little
// more than the socket buffers hold.
func TestBodyCapped(t *testing.T) {
	var written atomic.Int64
	srv := httptest.NewTLSServer(flood(http.StatusUnauthorized, &written))
	defer srv.Close()
	c := Client(srv.Client().Transport, Policy{}, 10*time.Second)
	resp, err := c.Get(srv.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var big *BodyTooLargeError
	if !errors.Is(err, ErrBodyTooLarge) || !errors.As(err, &big) || big.StatusCode != http.StatusUnauthorized {
		t.Fatalf("read %d bytes, err %v; want ErrBodyTooLarge with HTTP 401", len(body), err)
	}
	if len(body) != MaxBody {
		t.Errorf("read %d bytes before the error, want %d", len(body), MaxBody)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the read took %s", d)
	}
	srv.CloseClientConnections()
	time.Sleep(100 * time.Millisecond)
	if n := written.Load(); n > 16<<20 {
		t.Errorf("the server wrote %d MiB of its 100 MiB: the client read on", n>>20)
	}
	t.Logf("server wrote %d KiB before the client hung up", written.Load()>>10)
}

func TestSmallBodyWhole(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("b", MaxBody)))
	}))
	defer srv.Close()
	resp, err := Client(srv.Client().Transport, Policy{}, 0).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != MaxBody {
		t.Fatalf("read %d, %v; want all %d bytes", len(b), err, MaxBody)
	}
}

func TestPlainHTTPOnlyWhenAllowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	if _, err := Client(nil, Policy{}, 0).Get(srv.URL); !errors.Is(err, ErrPlainHTTP) {
		t.Errorf("plain HTTP without AllowHTTP: %v, want ErrPlainHTTP", err)
	}
	resp, err := Client(nil, Policy{AllowHTTP: true}, 0).Get(srv.URL)
	if err != nil {
		t.Fatalf("plain HTTP allowed: %v", err)
	}
	_ = resp.Body.Close()
}

// TestRedirects: same host followed; another host, or HTTPS to HTTP,
// refused — under our client and under a client with the default
// redirect policy (as go-containerregistry and the SDKs build).
func TestRedirects(t *testing.T) {
	other := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer other.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer plain.Close()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/other":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/plain":
			http.Redirect(w, r, plain.URL+"/x", http.StatusFound)
		}
	}))
	defer srv.Close()
	// other's certificate is httptest's too: the base trusts both.
	base := srv.Client().Transport
	for _, c := range []*http.Client{Client(base, Policy{AllowHTTP: true}, 0), {Transport: Transport(base, Policy{AllowHTTP: true})}} {
		resp, err := c.Get(srv.URL + "/same")
		if err != nil {
			t.Fatalf("same-host redirect: %v", err)
		}
		_ = resp.Body.Close()
		for _, path := range []string{"/other", "/plain"} {
			if _, err := c.Get(srv.URL + path); !errors.Is(err, ErrRedirect) {
				t.Errorf("redirect %s: %v, want ErrRedirect", path, err)
			}
		}
	}
	resp, err := Client(base, Policy{AllowOtherHosts: true}, 0).Get(srv.URL + "/other")
	if err != nil {
		t.Fatalf("another host with AllowOtherHosts: %v", err)
	}
	_ = resp.Body.Close()
}

func TestGuardRanges(t *testing.T) {
	g, err := NewGuard([]string{"10.20.0.0/16", "192.168.1.7"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1": false, "127.9.9.9": false, "::1": false, "169.254.169.254": false, "fe80::1": false,
		"10.0.0.1": false, "172.16.3.4": false, "192.168.0.1": false, "fd00::1": false, "100.64.1.1": false,
		"0.0.0.0": false, "::": false, "224.0.0.1": false, "ff02::1": false, "::ffff:127.0.0.1": false,
		"::ffff:169.254.169.254": false, "198.18.0.1": false, "fec0::1": false, "64:ff9b:1::a00:1": false,
		"2002:a00:1::1": false, "::10.0.0.1": false,
		"10.20.3.4": true, "192.168.1.7": true, "8.8.8.8": true, "2001:4860:4860::8888": true, "1.1.1.1": true,
	} {
		if got := g.Allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: allowed %t, want %t", addr, got, want)
		}
	}
	if _, err := NewGuard([]string{"not-a-cidr"}); err == nil {
		t.Error("NewGuard accepted not-a-cidr")
	}
}

// TestGuardAtConnect: the guard decides on the address dialled, after
// DNS — a name ("localhost") is refused for the address it resolves to —
// and an allowed address gets through.
func TestGuardAtConnect(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, url := range []string{srv.URL, "https://localhost:" + port} {
		_, err := Client(srv.Client().Transport, Policy{Guard: &Guard{}}, 5*time.Second).Get(url)
		if !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: %v, want ErrBlocked", url, err)
		}
	}
	g, _ := NewGuard([]string{"127.0.0.1/32"})
	resp, err := Client(srv.Client().Transport, Policy{Guard: g}, 5*time.Second).Get(srv.URL)
	if err != nil {
		t.Fatalf("allowed address: %v", err)
	}
	_ = resp.Body.Close()
	// A base that is not an *http.Transport cannot be guarded: it fails
	// rather than going unguarded.
	if _, err := (&http.Client{Transport: Transport(roundTripperFunc(nil), Policy{Guard: g})}).Get(srv.URL); err == nil {
		t.Error("an unguardable base was used unguarded")
	}
}

// A guarded transport goes to its target itself: through a proxy the
// guard would check the proxy's address, and the proxy would reach
// whatever the tenant named.
func TestGuardBypassesNoProxy(t *testing.T) {
	proxied := 0
	proxy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { proxied++ }))
	defer proxy.Close()
	proxyURL, _ := url.Parse(proxy.URL)
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.Proxy = http.ProxyURL(proxyURL)
	g, _ := NewGuard([]string{"127.0.0.1/32"})
	_, err := Client(base, Policy{Guard: &Guard{}, AllowHTTP: true}, 5*time.Second).Get("http://127.0.0.2:9/")
	if !errors.Is(err, ErrBlocked) || proxied != 0 {
		t.Errorf("through a proxy: %v, %d requests reached the proxy", err, proxied)
	}
	if tr := Transport(base, Policy{Guard: g}).(*transport).inner.(*http.Transport); tr.Proxy != nil {
		t.Error("a guarded transport keeps its proxy")
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
