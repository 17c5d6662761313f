// Command kube-controller-manager is the upstream Kubernetes controller manager,
// built from the Go module proxy at the same version as the test API server.
// tests/env/kube.sh runs it with only the garbage collector, so deleting an
// owner deletes its dependents (ownerReferences) as in a real cluster.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
