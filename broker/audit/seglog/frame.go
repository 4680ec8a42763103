package seglog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Frame types. A zero type byte is the preallocated, never written rest
// of a segment: the end of its frames.
const (
	frameHeader     byte = 'H' // a segment header (JSON of segHeader), first in every segment
	frameRecord     byte = 'R' // a sealed record, its bytes exactly as seal.Seal produced them
	frameCheckpoint byte = 'C' // a signed checkpoint (JSON of seal.Checkpoint)
)

// frameHeaderSize is [type 1][payload length 4, little-endian][CRC-32C of the payload 4].
const frameHeaderSize = 9

// maxPayload bounds one frame: a record is about 1 KiB; anything larger
// is a damaged length field, not a record.
const maxPayload = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends one frame to buf.
func appendFrame(buf []byte, typ byte, payload []byte) []byte {
	var h [frameHeaderSize]byte
	h[0] = typ
	binary.LittleEndian.PutUint32(h[1:5], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[5:9], crc32.Checksum(payload, castagnoli))
	buf = append(buf, h[:]...)
	return append(buf, payload...)
}

// frameSize is the bytes one frame of this payload takes.
func frameSize(payload int) int { return frameHeaderSize + payload }

// errEnd is the end of the written frames (a zero type byte or the end
// of the file at a frame boundary).
var errEnd = errors.New("end of frames")

// badFrame is a frame that cannot be read: a torn write at the tail of
// the last segment, or damage anywhere else.
type badFrame struct {
	Segment string
	Offset  int64
	Why     string
}

func (b *badFrame) Error() string {
	return fmt.Sprintf("segment %s offset %d: %s", b.Segment, b.Offset, b.Why)
}

// frameReader reads frames sequentially from a segment through pread
// (an io.SectionReader over the file), never mmap.
type frameReader struct {
	name string
	r    io.Reader
	off  int64 // offset of the next frame
	end  int64 // the reader stops here
	buf  []byte
}

// next returns the next frame's type and payload (valid until the next
// call). At the end it returns errEnd; a frame that cannot be read is a
// *badFrame.
func (fr *frameReader) next() (byte, []byte, error) {
	if fr.off >= fr.end {
		return 0, nil, errEnd
	}
	var h [frameHeaderSize]byte
	if fr.end-fr.off < frameHeaderSize {
		n, _ := io.ReadFull(fr.r, h[:fr.end-fr.off])
		if allZero(h[:n]) {
			return 0, nil, errEnd
		}
		return 0, nil, &badFrame{fr.name, fr.off, "a frame header is cut short"}
	}
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("segment %s offset %d: %w", fr.name, fr.off, err)
	}
	if h[0] == 0 {
		return 0, nil, errEnd
	}
	n := int64(binary.LittleEndian.Uint32(h[1:5]))
	switch {
	case h[0] != frameHeader && h[0] != frameRecord && h[0] != frameCheckpoint:
		return 0, nil, &badFrame{fr.name, fr.off, fmt.Sprintf("unknown frame type %#x", h[0])}
	case n > maxPayload || n == 0:
		return 0, nil, &badFrame{fr.name, fr.off, fmt.Sprintf("implausible frame length %d", n)}
	case fr.off+frameHeaderSize+n > fr.end:
		return 0, nil, &badFrame{fr.name, fr.off, "a frame runs past the end of the segment"}
	}
	if int64(cap(fr.buf)) < n {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		return 0, nil, fmt.Errorf("segment %s offset %d: %w", fr.name, fr.off, err)
	}
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(h[5:9]) {
		return h[0], p, &badFrame{fr.name, fr.off, "frame checksum mismatch"}
	}
	fr.off += frameHeaderSize + n
	return h[0], p, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// rawSeq reads the seq of stored record bytes without decoding them:
// seal writes `{"chain":"…",` (optional) then `"seq":N`.
func rawSeq(raw []byte) (uint64, bool) {
	const key = `"seq":`
	lim := min(len(raw), 512)
	for i := 0; i+len(key) < lim; i++ {
		if raw[i] != '"' || string(raw[i:i+len(key)]) != key {
			continue
		}
		var n uint64
		j := i + len(key)
		start := j
		for ; j < len(raw) && raw[j] >= '0' && raw[j] <= '9' && j-start < 20; j++ {
			n = n*10 + uint64(raw[j]-'0')
		}
		return n, j > start
	}
	return 0, false
}
