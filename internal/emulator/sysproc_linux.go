package emulator

import "syscall"

// sysProcAttr puts the emulator in its own process group (Stop kills the
// group) and has the kernel SIGKILL it when the thread that started it
// dies, so a crashed or killed test binary does not leave a JVM behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
