// Prints its pid, then runtime.GOMAXPROCS(0) and runtime.NumCPU() once per input line.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Println(os.Getpid())
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		fmt.Println(runtime.GOMAXPROCS(0), runtime.NumCPU())
	}
}
