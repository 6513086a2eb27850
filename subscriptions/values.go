package subscriptions

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/genproto/googleapis/type/latlng"
)

// ToJSONValue converts one Firestore Go value (as the firestore client's
// DocumentSnapshot.Data returns them) to the plain JSON mapping of
// docs/protocol.md ("Server → client"), returning a new value and leaving
// v untouched:
//
//   - nil, bool, string, int64 and float64 stay as they are (other Go
//     integer and float kinds become int64 and float64). Integers beyond
//     ±2^53 are exact in the JSON text but not in JavaScript.
//   - NaN, +Inf and -Inf, which JSON cannot hold, become the strings "NaN",
//     "Infinity" and "-Infinity".
//   - time.Time becomes an RFC 3339 string in UTC with as many fractional
//     digits as needed (time.RFC3339Nano).
//   - []byte becomes standard base64 with padding.
//   - *firestore.DocumentRef becomes its database-relative path
//     ("projects/p1/tasks/t9"); a nil ref becomes nil.
//   - *latlng.LatLng becomes {"latitude": float64, "longitude": float64}.
//   - firestore.Vector64 and Vector32 become []any of float64.
//   - []any and map[string]any are converted recursively.
//   - The BSON types of Firestore with MongoDB compatibility: BSONInt32 →
//     int64; BSONObjectID and BSONDecimal128 → string; BSONTimestamp →
//     {"seconds","increment"}; BSONRegex → {"pattern","options"};
//     BSONBinary → {"subtype","data"(base64)}; BSONMinKey → {"$minKey":1};
//     BSONMaxKey → {"$maxKey":1}.
//   - Anything else becomes its fmt.Sprint string, so the result always
//     encodes as JSON.
func ToJSONValue(v any) any { return toJSON(v, false) }

// DataToJSON converts a document's fields with ToJSONValue into a new map.
// A nil map gives an empty, non-nil map.
func DataToJSON(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = toJSON(v, false)
	}
	return out
}

// dataToJSONInPlace is DataToJSON for maps the caller owns (fresh from
// DocumentSnapshot.Data): maps and slices are converted in place.
func dataToJSONInPlace(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	for k, v := range m {
		m[k] = toJSON(v, true)
	}
	return m
}

func toJSON(v any, inPlace bool) any {
	switch x := v.(type) {
	case nil, bool, string, int64:
		return x
	case float64:
		return jsonFloat(x)
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return jsonFloat(float64(x))
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case *time.Time:
		if x == nil {
			return nil
		}
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		if x == nil {
			return nil
		}
		return base64.StdEncoding.EncodeToString(x)
	case *firestore.DocumentRef:
		if x == nil {
			return nil
		}
		return relativePath(x.Path)
	case *latlng.LatLng:
		if x == nil {
			return nil
		}
		return map[string]any{"latitude": jsonFloat(x.GetLatitude()), "longitude": jsonFloat(x.GetLongitude())}
	case latlng.LatLng:
		return map[string]any{"latitude": jsonFloat(x.GetLatitude()), "longitude": jsonFloat(x.GetLongitude())}
	case []any:
		if x == nil {
			return nil
		}
		out := x
		if !inPlace {
			out = make([]any, len(x))
		}
		for i, e := range x {
			out[i] = toJSON(e, inPlace)
		}
		return out
	case map[string]any:
		if x == nil {
			return nil
		}
		out := x
		if !inPlace {
			out = make(map[string]any, len(x))
		}
		for k, e := range x {
			out[k] = toJSON(e, inPlace)
		}
		return out
	case firestore.Vector64:
		out := make([]any, len(x))
		for i, f := range x {
			out[i] = jsonFloat(f)
		}
		return out
	case firestore.Vector32:
		out := make([]any, len(x))
		for i, f := range x {
			out[i] = jsonFloat(float64(f))
		}
		return out
	case firestore.BSONInt32:
		return int64(x)
	case firestore.BSONObjectID:
		return string(x)
	case firestore.BSONDecimal128:
		return string(x)
	case firestore.BSONTimestamp:
		return map[string]any{"seconds": int64(x.Seconds), "increment": int64(x.Increment)}
	case firestore.BSONRegex:
		return map[string]any{"pattern": x.Pattern, "options": x.Options}
	case firestore.BSONBinary:
		return map[string]any{"subtype": int64(x.Subtype), "data": base64.StdEncoding.EncodeToString(x.Data)}
	case firestore.BSONMinKey:
		return map[string]any{"$minKey": int64(1)}
	case firestore.BSONMaxKey:
		return map[string]any{"$maxKey": int64(1)}
	default:
		return fmt.Sprint(x)
	}
}

func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

// relativePath turns a document resource name
// "projects/P/databases/D/documents/tasks/t1" into the database-relative
// path "tasks/t1". Anything else is returned unchanged.
func relativePath(name string) string {
	p := strings.SplitN(name, "/", 6)
	if len(p) == 6 && p[0] == "projects" && p[1] != "" && p[2] == "databases" &&
		p[3] != "" && p[4] == "documents" && p[5] != "" {
		return p[5]
	}
	return name
}

// FilterValueToFirestore converts a decoded `where` value (see
// wire.DecodeClient: nil, bool, string, int64, float64 or []any of those)
// into the value handed to firestore.Query.Where. Those pass through;
// json.Number becomes int64 when integral, else float64; other Go integer
// kinds become int64. JSON has no timestamp, bytes or reference type, so a
// filter on such a field compares against a string and matches nothing of
// those types (Firestore orders values by type first).
func FilterValueToFirestore(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return f
		}
		return string(x)
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = FilterValueToFirestore(e)
		}
		return out
	default:
		return v
	}
}
