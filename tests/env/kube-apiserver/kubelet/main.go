// Command kubelet is the upstream kubelet, built from the Go module proxy at
// the same version as the test API server. tests/env/node.sh runs it against
// containerd as this machine's one node.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
