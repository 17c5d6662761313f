// Command kube-apiserver is the upstream Kubernetes API server, built from the Go
// module proxy so the tests run against the real thing without Docker or a
// release tarball.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
