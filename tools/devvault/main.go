// Command devvault is a HashiCorp Vault server built from source for
// development and tests, because no prebuilt Vault binary can be downloaded
// on the machines Relais is developed and tested on. It is the upstream
// Vault CLI unchanged: `devvault server -dev` behaves like `vault server -dev`.
//
// Build it with `go build -tags minimal` (see tools/devvault/build.sh).
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
