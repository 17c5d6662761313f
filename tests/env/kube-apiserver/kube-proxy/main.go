// Command kube-proxy is the upstream service proxy, built from the Go module
// proxy at the same version as the test API server. tests/env/node.sh runs it
// so pods reach the API server through the `kubernetes` Service's ClusterIP,
// as in-cluster clients do everywhere.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
