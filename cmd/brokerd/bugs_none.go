//go:build jepsen && !jepsenbug

package main

// seededBugs: this jepsen build has no seeded bugs (build tag jepsenbug
// adds them, bugs_jepsen.go).
func seededBugs(string) *bugSet { return nil }
