// Command testsummary reads `go test -json` output on stdin, echoes the
// human-readable output of failing tests and every package result, and
// closes with one summary line: "N passed, N failed, N skipped". It exits
// non-zero when anything failed or no test ran.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	var passed, failed, skipped int
	outputs := map[string][]string{}
	var failedTests []string
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Println(string(line)) // build errors and the like
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if e.Test != "" {
				outputs[key] = append(outputs[key], e.Output)
			} else if strings.HasPrefix(e.Output, "ok ") || strings.HasPrefix(e.Output, "FAIL") || strings.HasPrefix(e.Output, "---") || strings.Contains(e.Output, "[no test files]") || strings.HasPrefix(e.Output, "panic") {
				fmt.Print(e.Output)
			} else {
				outputs[e.Package] = append(outputs[e.Package], e.Output)
			}
		case "pass":
			if e.Test != "" {
				passed++
			}
			delete(outputs, key)
		case "skip":
			if e.Test != "" {
				skipped++
				fmt.Printf("SKIP %s %s\n", e.Package, e.Test)
			}
			delete(outputs, key)
		case "fail":
			if e.Test != "" {
				failed++
				failedTests = append(failedTests, key)
				fmt.Printf("--- FAIL: %s\n%s", key, strings.Join(outputs[key], ""))
			} else {
				pkgFailed = true
				fmt.Print(strings.Join(outputs[e.Package], ""))
			}
			delete(outputs, key)
		}
	}
	sort.Strings(failedTests)
	if len(failedTests) > 0 {
		fmt.Println("\nFailed tests:")
		for _, t := range failedTests {
			fmt.Println("  " + t)
		}
	}
	fmt.Printf("\n%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed || passed == 0 {
		os.Exit(1)
	}
}
