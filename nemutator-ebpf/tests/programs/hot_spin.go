// Test load for nemutator-ebpf: burns CPU in a function with a distinctive
// name. `hot_spin_go [ROUNDS]` (0 = forever); prints "ready" at start.
//
// Build: go build -o hot_spin_go hot_spin.go
package main

import (
	"fmt"
	"os"
	"strconv"
)

//go:noinline
func nemutatorHotSpinGo(n uint64) uint64 {
	var acc uint64
	for i := uint64(0); i < n; i++ {
		acc += (i * i) ^ (acc >> 3)
	}
	return acc
}

func main() {
	rounds := uint64(0)
	if len(os.Args) > 1 {
		if r, err := strconv.ParseUint(os.Args[1], 10, 64); err == nil {
			rounds = r
		}
	}
	fmt.Println("ready")
	var sink uint64
	for r := uint64(0); rounds == 0 || r < rounds; r++ {
		sink += nemutatorHotSpinGo(1000000)
	}
	if sink == 42 {
		os.Exit(1)
	}
}
