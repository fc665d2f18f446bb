// Package testserver starts the stand-in HTTPS servers tests talk to —
// each with a CA of its own, so that trusting it is a choice the test
// makes — and writes the hostile answers (floods) a client must bound.
package testserver

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"regcred.dev/regcred/internal/pki"
)

// TLS is an HTTPS server on loopback with a CA of its own.
type TLS struct {
	*httptest.Server
	// CA signed the serving certificate; trust it to talk to the server.
	CA *pki.KeyPair
}

// StartTLS serves h over TLS on l (a new 127.0.0.1 port when nil) with a
// certificate for hosts (127.0.0.1 and localhost when none), signed by a
// fresh CA named caName. Failed handshakes are not logged: tests of
// untrusted CAs cause them on purpose.
func StartTLS(h http.Handler, l net.Listener, caName string, hosts ...string) (*TLS, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	ca, err := pki.NewCA(caName, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	serving, err := ca.IssueServing(hosts, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := serving.TLSCertificate()
	if err != nil {
		return nil, err
	}
	if l == nil {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	s := httptest.NewUnstartedServer(h)
	_ = s.Listener.Close()
	s.Listener = l
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	return &TLS{Server: s, CA: ca}, nil
}

// FloodLimit is how much Flood writes at most: far more than any client
// should read.
const FloodLimit = 100 << 20

// Flood answers with status and then up to FloodLimit bytes of marker,
// adding to written what it managed to write. A HEAD gets the status
// alone: no body can follow it.
func Flood(w http.ResponseWriter, r *http.Request, status int, marker string, written *atomic.Int64) {
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	chunk := []byte(strings.Repeat(marker+" ", 4<<10))
	for written.Load() < FloodLimit {
		n, err := w.Write(chunk)
		written.Add(int64(n))
		if err != nil {
			return
		}
	}
}
