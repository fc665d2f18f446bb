package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// readPassword reads a password or token from stdin or from the file named
// by fileFlag. Like `docker login --password-stdin`, one trailing newline
// is not part of it; an empty one is an error.
func readPassword(stdin io.Reader, fromStdin bool, file, fileFlag string) (string, error) {
	var raw []byte
	var err error
	if fromStdin {
		raw, err = io.ReadAll(bufio.NewReader(io.LimitReader(stdin, 1<<20)))
		if err != nil {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
	} else {
		raw, err = os.ReadFile(file)
		if err != nil {
			return "", usageErrorf("read %s: %v", fileFlag, err)
		}
	}
	password := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if password == "" {
		return "", usageErrorf("the password is empty")
	}
	return password, nil
}
