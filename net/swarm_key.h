// A private swarm's pre-shared key (--swarm-key FILE): 256 random bits that
// every member holds. Connections between holders are authenticated with it
// before anything else is said, and every frame is encrypted (net/handshake.h,
// net/secure_frames.h); anyone else gets a closed connection.
//
// File: the line "engine-swarm-key-v1" then 64 hex digits and a newline;
// created 0600 (temp file + rename); a file readable by others is refused.
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace engine::net {

using SwarmKey = std::array<uint8_t, 32>;

// Throws Error on a missing, malformed or world-readable file.
SwarmKey load_swarm_key(const std::string& path);
// Writes a fresh random key; refuses an existing file unless force.
void write_swarm_key(const std::string& path, bool force);

}  // namespace engine::net
