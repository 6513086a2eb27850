//go:build unix && !linux

package emulator

import "syscall"

// sysProcAttr puts the emulator in its own process group (Stop kills the
// group). Outside Linux there is no parent-death signal: a killed parent
// leaves the emulator running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
