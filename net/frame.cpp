#include "net/frame.h"

#include "net/secure_frames.h"

// The streaming state is declared only for static allocation.
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace engine::net {

const char* frame_error_name(FrameError e) {
  switch (e) {
    case FrameError::kNone: return "ok";
    case FrameError::kBadMagic: return "bad magic";
    case FrameError::kBadVersion: return "unsupported protocol version";
    case FrameError::kBadFlags: return "unknown frame flags";
    case FrameError::kOversized: return "frame exceeds size limit";
    case FrameError::kBadChecksum: return "checksum mismatch";
    case FrameError::kTruncated: return "truncated frame";
    case FrameError::kBadSeal: return "record failed to authenticate";
  }
  return "?";
}

static void put_be(uint8_t* p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get_be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

uint64_t frame_checksum(const void* a, size_t na, const void* b, size_t nb) {
  if (!nb) return XXH3_64bits(a, na);
  // Streaming state so the two pieces hash exactly like their concatenation.
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, a, na);
  XXH3_64bits_update(&st, b, nb);
  return XXH3_64bits_digest(&st);
}

void write_frame_header(uint8_t out[kFrameHeaderSize], std::string_view prefix, std::string_view payload,
                        std::string_view tail) {
  std::memcpy(out, kFrameMagic, 4);
  put_be(out + 4, kProtocolVersion, 2);
  put_be(out + 6, 0, 2);
  put_be(out + 8, prefix.size() + payload.size() + tail.size(), 4);
  uint64_t sum;
  if (tail.empty()) {
    sum = frame_checksum(prefix.data(), prefix.size(), payload.data(), payload.size());
  } else {
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, prefix.data(), prefix.size());
    XXH3_64bits_update(&st, payload.data(), payload.size());
    XXH3_64bits_update(&st, tail.data(), tail.size());
    sum = XXH3_64bits_digest(&st);
  }
  put_be(out + 12, sum, 8);
}

std::string encode_frame(std::string_view body) {
  std::string out(kFrameHeaderSize, '\0');
  write_frame_header((uint8_t*)out.data(), body);
  out.append(body);
  return out;
}

FrameError parse_frame_header(const uint8_t* p, size_t max_body, FrameHeader* h) {
  if (std::memcmp(p, kFrameMagic, 4) != 0) return FrameError::kBadMagic;
  h->version = (uint16_t)get_be(p + 4, 2);
  h->flags = (uint16_t)get_be(p + 6, 2);
  h->length = (uint32_t)get_be(p + 8, 4);
  h->checksum = get_be(p + 12, 8);
  if (h->version != kProtocolVersion) return FrameError::kBadVersion;
  if (h->flags != 0) return FrameError::kBadFlags;
  if (h->length > max_body) return FrameError::kOversized;
  return FrameError::kNone;
}

FrameError decode_frame(const uint8_t* data, size_t n, size_t max_body, std::string_view* body, size_t* consumed) {
  if (n < kFrameHeaderSize) {
    // A short buffer that already has a wrong magic is reported as such.
    if (std::memcmp(data, kFrameMagic, n < 4 ? n : 4) != 0) return FrameError::kBadMagic;
    return FrameError::kTruncated;
  }
  FrameHeader h;
  FrameError e = parse_frame_header(data, max_body, &h);
  if (e != FrameError::kNone) return e;
  if (n - kFrameHeaderSize < h.length) return FrameError::kTruncated;
  const uint8_t* b = data + kFrameHeaderSize;
  if (frame_checksum(b, h.length) != h.checksum) return FrameError::kBadChecksum;
  *body = std::string_view((const char*)b, h.length);
  *consumed = kFrameHeaderSize + h.length;
  return FrameError::kNone;
}

char* FrameReader::write_space(size_t want, size_t* got) {
  if (start_ == end_) start_ = end_ = 0;  // the common case: everything consumed
  size_t target = std::max(want, need_ > buffered() ? need_ - buffered() : 0);
  if (cap_ - end_ < target) {
    if (start_ > 0) {
      std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    if (cap_ - end_ < target) {
      size_t cap = std::max(end_ + target, cap_ + cap_ / 2);
      std::unique_ptr<char[]> bigger(new char[cap]);
      if (end_) std::memcpy(bigger.get(), buf_.get(), end_);
      buf_ = std::move(bigger);
      cap_ = cap;
    }
  }
  *got = cap_ - end_;
  return buf_.get() + end_;
}

void FrameReader::shrink() {
  if (start_ == end_ && cap_ > (256u << 10)) {
    buf_.reset();
    cap_ = start_ = end_ = 0;
  }
}

void FrameReader::feed(const void* p, size_t n) {
  size_t got;
  char* dst = write_space(n, &got);
  std::memcpy(dst, p, n);
  commit(n);
}

FrameReader::Result FrameReader::next(std::string_view* body) {
  if (error_ != FrameError::kNone) return kError;
  if (sealed_) return next_sealed(body);
  if (buffered() == 0) return kNeedMore;
  const uint8_t* p = (const uint8_t*)buf_.get() + start_;
  if (buffered() < kFrameHeaderSize) {
    // Refuse a stranger speaking another protocol from its first bytes.
    if (std::memcmp(p, kFrameMagic, std::min<size_t>(buffered(), 4)) != 0) {
      error_ = FrameError::kBadMagic;
      return kError;
    }
    return kNeedMore;
  }
  FrameHeader h;
  error_ = parse_frame_header(p, max_body_, &h);
  if (error_ != FrameError::kNone) return kError;
  need_ = kFrameHeaderSize + h.length;
  if (buffered() < need_) return kNeedMore;
  if (frame_checksum(p + kFrameHeaderSize, h.length) != h.checksum) {
    error_ = FrameError::kBadChecksum;
    return kError;
  }
  *body = std::string_view((const char*)p + kFrameHeaderSize, h.length);
  start_ += need_;
  need_ = kFrameHeaderSize;
  return kFrame;
}

FrameReader::Result FrameReader::next_sealed(std::string_view* body) {
  if (buffered() < kSealHeaderBytes) return kNeedMore;
  uint8_t* p = (uint8_t*)buf_.get() + start_;
  uint32_t n = sealed_length(p);
  if (n > max_body_) {  // before waiting for (or allocating) the body
    error_ = FrameError::kOversized;
    return kError;
  }
  need_ = sealed_size(n);
  if (buffered() < need_) return kNeedMore;
  if (!open_record(key_, seq_, p, n)) {
    error_ = FrameError::kBadSeal;
    return kError;
  }
  seq_++;
  *body = std::string_view((const char*)p + kSealHeaderBytes, n);
  start_ += need_;
  need_ = kSealHeaderBytes;
  return kFrame;
}

const uint8_t* FrameReader::take_raw(size_t n) {
  if (buffered() < n) {
    need_ = n;
    return nullptr;
  }
  const uint8_t* p = (const uint8_t*)buf_.get() + start_;
  start_ += n;
  need_ = kFrameHeaderSize;
  return p;
}

void FrameReader::set_opener(const ChannelKey& key) {
  sealed_ = true;
  key_ = key;
  need_ = kSealHeaderBytes;
}

}  // namespace engine::net
