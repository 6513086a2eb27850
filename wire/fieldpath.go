package wire

import "errors"

// ParseFieldPath splits a Firestore field path into its segments: segments
// are separated by dots; a segment in backquotes may hold any character,
// with \ escaping ` and \ inside. Errors name what is wrong but not the
// path (callers quote it as they see fit).
func ParseFieldPath(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("empty field path")
	}
	var segs []string
	var seg []byte
	for i := 0; i < len(s); {
		seg = seg[:0]
		if s[i] == '`' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					seg = append(seg, s[i+1])
					i += 2
					continue
				}
				i++
				if c == '`' {
					closed = true
					break
				}
				seg = append(seg, c)
			}
			if !closed {
				return nil, errors.New("unterminated backquote")
			}
			if i < len(s) && s[i] != '.' {
				return nil, errors.New("a backquoted segment must be followed by . or the end")
			}
		} else {
			for i < len(s) && s[i] != '.' {
				if s[i] == '`' {
					return nil, errors.New("backquote inside an unquoted segment")
				}
				seg = append(seg, s[i])
				i++
			}
		}
		if len(seg) == 0 {
			return nil, errors.New("empty segment")
		}
		segs = append(segs, string(seg))
		if i < len(s) {
			i++ // the dot
			if i == len(s) {
				return nil, errors.New("empty segment")
			}
		}
	}
	return segs, nil
}

// JoinFieldPath is the canonical form of a parsed field path: segments that
// are plain identifiers bare, others backquoted with ` and \ escaped. Equal
// paths, however quoted, give equal strings.
func JoinFieldPath(segs []string) string {
	n := 0
	for _, s := range segs {
		n += len(s) + 3
	}
	b := make([]byte, 0, n)
	for i, seg := range segs {
		if i > 0 {
			b = append(b, '.')
		}
		if IsIdentifier(seg) {
			b = append(b, seg...)
			continue
		}
		b = append(b, '`')
		for j := 0; j < len(seg); j++ {
			if seg[j] == '`' || seg[j] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, seg[j])
		}
		b = append(b, '`')
	}
	return string(b)
}

// IsIdentifier reports whether s is [A-Za-z_][A-Za-z0-9_]*: a field name
// that needs no quoting, and a valid CEL identifier.
func IsIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
