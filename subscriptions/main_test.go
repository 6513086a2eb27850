package subscriptions

import (
	"os"
	"sync"
	"testing"

	"github.com/firegate/firegate/internal/emulator"
	"github.com/firegate/firegate/internal/emulator/emulatortest"
)

// emu is the one Firestore emulator of this test binary. It starts on the
// first testEmulator call, so tests that do not need Firestore pay nothing.
var (
	emu        emulatortest.Shared
	emuEnvOnce sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

// testEmulator returns the package's shared emulator, starting it on first
// use, and points FIRESTORE_EMULATOR_HOST at it (process-wide, set once) so
// that firestore clients created afterwards talk to it. Tests isolate their
// data by using their own project id (see fsTestProject).
func testEmulator(t testing.TB) *emulator.Emulator {
	t.Helper()
	e := emu.Get(t)
	emuEnvOnce.Do(func() { _ = os.Setenv("FIRESTORE_EMULATOR_HOST", e.Host) })
	return e
}
