// pause: the pod sandbox's init process (what registry.k8s.io/pause does). It holds the
// pod's namespaces, reaps zombies and exits 0 on SIGINT/SIGTERM. Built statically by
// scripts/cluster/build.sh and packed into an image by scripts/cluster/images.sh, since
// no registry here serves registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
