// Command testimage is the one program of the harness's container images:
// the node's pause (sandbox) image and the small images the tests pull. It
// waits until it is told to stop, so a container running it stays Running.
// Built static, it needs nothing from its image but itself.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	fmt.Println("testimage: running")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	fmt.Println("testimage: stopping")
}
