// Command kube-scheduler is the upstream scheduler, built from the Go module
// proxy at the same version as the test API server. tests/env/node.sh runs it
// so pods are placed by the real thing (affinity, spread, resources).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
