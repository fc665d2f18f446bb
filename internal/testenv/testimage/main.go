// Command testimage is the one program of the harness's container images:
// the node's pause (sandbox) image and the small images the tests pull.
//
//	testimage              wait until told to stop (a container stays Running)
//	testimage serve ADDR   answer every HTTP request on ADDR with 200 "testimage"
//	testimage apiserver    GET /version from the API server through the
//	                       kubernetes Service, verifying its certificate with
//	                       the Pod's ServiceAccount CA; exit 0 on 200
//
// Built static, it needs nothing from its image but itself.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	switch {
	case len(args) == 0:
		fmt.Println("testimage: running")
		waitForStop()
	case args[0] == "serve" && len(args) == 2:
		serve(args[1])
	case args[0] == "apiserver":
		os.Exit(probeAPIServer())
	default:
		fmt.Fprintf(os.Stderr, "testimage: unknown arguments %q\n", args)
		os.Exit(2)
	}
}

func waitForStop() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	fmt.Println("testimage: stopping")
}

func serve(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("testimage: serving on", addr)
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "testimage")
		}))
	}()
	waitForStop()
}

func probeAPIServer() int {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	ca, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	token, _ := os.ReadFile(sa + "token")
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	url := "https://" + net.JoinHostPort(host, port) + "/version"
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+string(token))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("GET %s: %s %s\n", url, resp.Status, body)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
