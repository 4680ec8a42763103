package source

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// SetMetadata sets the source metadata field ("source") of a typed
// response; it reports false when the response has none.
func SetMetadata(resp proto.Message, meta *commonv1.SourceMetadata) bool {
	r := resp.ProtoReflect()
	f := r.Descriptor().Fields().ByName("source")
	if f == nil || f.Message() == nil || f.Message().FullName() != meta.ProtoReflect().Descriptor().FullName() {
		return false
	}
	r.Set(f, protoreflect.ValueOfMessage(meta.ProtoReflect()))
	return true
}
