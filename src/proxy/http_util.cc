#include "proxy/http_util.h"

#include <fmt/format.h>
#include <strings.h>

namespace airlock::proxy {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

size_t count_header(const HeaderList& headers, std::string_view name) {
  size_t n = 0;
  for (const auto& h : headers)
    if (iequals(h.first, name)) ++n;
  return n;
}

std::optional<std::string> find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& h : headers)
    if (iequals(h.first, name)) return h.second;
  return std::nullopt;
}

void remove_header(HeaderList& headers, std::string_view name) {
  std::erase_if(headers, [&](const auto& h) { return iequals(h.first, name); });
}

void set_header(HeaderList& headers, std::string_view name, std::string value) {
  remove_header(headers, name);
  headers.emplace_back(std::string(name), std::move(value));
}

std::vector<std::string> connection_tokens(const HeaderList& headers) {
  std::vector<std::string> out;
  for (const auto& h : headers) {
    if (!iequals(h.first, "connection")) continue;
    std::string_view v = h.second;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view tok = trim(v.substr(0, comma));
      if (!tok.empty()) out.push_back(to_lower(tok));
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return out;
}

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection",        "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
      "transfer-encoding", "upgrade",    "content-length",   "proxy-authenticate"};
  for (auto n : kNames)
    if (iequals(name, n)) return true;
  return false;
}

const char* status_text(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status < 400 ? "OK" : (status < 500 ? "Client Error" : "Server Error");
  }
}

std::string plain_response(int status, std::string_view body, bool close) {
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n"
      "Cache-Control: no-store\r\n{}\r\n{}",
      status, status_text(status), body.size(), close ? "Connection: close\r\n" : "", body);
}

bool valid_header_value(std::string_view value) {
  for (char c : value)
    if (c == '\r' || c == '\n' || c == '\0') return false;
  return true;
}

}  // namespace airlock::proxy
