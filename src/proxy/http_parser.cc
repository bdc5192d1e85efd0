#include "proxy/http_parser.h"

#include <llhttp.h>

namespace airlock::proxy {

struct HttpParser::Impl {
  Kind kind;
  HttpLimits limits;
  llhttp_t parser;
  llhttp_settings_t settings;
  BodySink body_sink;
  bool response_to_head = false;

  HttpHead head;
  bool field_open = false;  // the last callback was a header field (value not started)
  bool value_open = false;
  bool pending_message_end = false;
  bool message_done = false;  // a message ended; the next byte starts a new head scan
  bool broken = false;
  int err_status = 400;
  std::string err;

  // Head scanner: refuses what llhttp 8 tolerates (bare LF, obs-fold) and bounds the head.
  bool in_head = true;
  size_t head_bytes = 0;
  size_t line_len = 0;
  size_t lines = 0;
  bool prev_cr = false;
  bool in_name = false;  // inside a header field name (before its ':')

  static Impl* self(llhttp_t* p) { return static_cast<Impl*>(p->data); }

  void fail(int status, std::string why) {
    broken = true;
    err_status = status;
    err = std::move(why);
  }

  void reset_head_scan() {
    in_head = true;
    head_bytes = line_len = lines = 0;
    prev_cr = in_name = false;
  }

  // Scans head bytes; returns false on a violation.
  bool scan_head(const char* data, size_t len) {
    for (size_t i = 0; i < len && in_head; ++i) {
      char c = data[i];
      if (++head_bytes > limits.max_head_bytes) {
        fail(431, "request header too large");
        return false;
      }
      if (c == '\n') {
        if (!prev_cr) {
          fail(400, "bare LF in message head");
          return false;
        }
        prev_cr = false;
        if (line_len == 0) {
          if (lines > 0) in_head = false;  // empty line ends the head
        } else {
          ++lines;
        }
        line_len = 0;
        continue;
      }
      if (prev_cr) {
        fail(400, "CR not followed by LF in message head");
        return false;
      }
      if (c == '\r') {
        prev_cr = true;
        continue;
      }
      if (line_len == 0 && lines > 0 && (c == ' ' || c == '\t')) {
        fail(400, "obsolete line folding in message head");
        return false;
      }
      if (line_len == 0) in_name = lines > 0;
      if (in_name && c == ':') in_name = false;
      if (in_name && (c == ' ' || c == '\t')) {
        // "Host : x" is read as "Host" by some servers and not by others: refuse it.
        fail(400, "whitespace in a header field name");
        return false;
      }
      ++line_len;
    }
    return true;
  }

  static int on_message_begin(llhttp_t* p) {
    Impl* s = self(p);
    s->head = HttpHead{};
    s->field_open = s->value_open = false;
    return 0;
  }
  static int on_url(llhttp_t* p, const char* at, size_t len) {
    Impl* s = self(p);
    if (s->head.url.size() + len > s->limits.max_url_bytes) {
      s->fail(414, "request target too long");
      return -1;
    }
    s->head.url.append(at, len);
    return 0;
  }
  static int on_method(llhttp_t* p, const char* at, size_t len) {
    Impl* s = self(p);
    if (s->head.method.size() + len > 32) {
      s->fail(400, "method too long");
      return -1;
    }
    s->head.method.append(at, len);
    return 0;
  }
  static int on_status(llhttp_t* p, const char* at, size_t len) {
    Impl* s = self(p);
    if (s->head.reason.size() + len > 256) return 0;  // keep a bounded reason
    s->head.reason.append(at, len);
    return 0;
  }
  static int on_header_field(llhttp_t* p, const char* at, size_t len) {
    Impl* s = self(p);
    if (!s->field_open) {
      if (s->head.headers.size() >= s->limits.max_headers) {
        s->fail(431, "too many header fields");
        return -1;
      }
      s->head.headers.emplace_back();
      s->field_open = true;
      s->value_open = false;
    }
    s->head.headers.back().first.append(at, len);
    return 0;
  }
  static int on_header_value(llhttp_t* p, const char* at, size_t len) {
    Impl* s = self(p);
    if (s->head.headers.empty()) return -1;
    s->field_open = false;
    s->value_open = true;
    s->head.headers.back().second.append(at, len);
    return 0;
  }
  static int on_header_value_complete(llhttp_t* p) {
    Impl* s = self(p);
    s->field_open = false;
    s->value_open = false;
    return 0;
  }
  static int on_headers_complete(llhttp_t* p) {
    Impl* s = self(p);
    HttpHead& h = s->head;
    h.version_major = llhttp_get_http_major(p);
    h.version_minor = llhttp_get_http_minor(p);
    if (s->kind == Kind::response) h.status = llhttp_get_status_code(p);
    h.keep_alive = llhttp_should_keep_alive(p) != 0;
    h.upgrade = llhttp_get_upgrade(p) != 0;
    h.chunked = (p->flags & F_CHUNKED) != 0;
    h.content_length = -1;
    if (!h.chunked && (p->flags & F_CONTENT_LENGTH)) {
      h.content_length = static_cast<int64_t>(p->content_length);
    }
    if ((p->flags & F_TRANSFER_ENCODING) && !h.chunked && s->kind == Kind::request) {
      // A request body framed by anything but chunked cannot be delimited: refuse it.
      s->fail(400, "Transfer-Encoding without chunked");
      return -1;
    }
    s->in_head = false;
    if (s->kind == Kind::response && s->response_to_head) {
      s->pending_message_end = true;  // reported after the head event
      return 1;                       // no body; llhttp completes the message now
    }
    return HPE_PAUSED;
  }
  static int on_body(llhttp_t* p, const char* at, size_t len) {
    Impl* s = self(p);
    if (s->body_sink) s->body_sink(std::string_view(at, len));
    return 0;
  }
  static int on_message_complete(llhttp_t* p) {
    Impl* s = self(p);
    s->message_done = true;
    if (llhttp_get_upgrade(p)) return 0;  // llhttp returns HPE_PAUSED_UPGRADE itself
    return HPE_PAUSED;
  }

  Outcome run(const char* data, size_t len) {
    Outcome out;
    if (broken) {
      out.event = Event::error;
      return out;
    }
    if (pending_message_end) {
      // A HEAD response completed in the same call as its head; report its end now.
      pending_message_end = false;
      message_done = false;
      reset_head_scan();
      out.event = Event::message_end;
      return out;
    }
    if (in_head && !scan_head(data, len)) {
      out.event = Event::error;
      return out;
    }
    llhttp_errno_t e = llhttp_execute(&parser, data, len);
    size_t consumed = len;
    if (e != HPE_OK) {
      const char* pos = llhttp_get_error_pos(&parser);
      if (pos >= data && pos <= data + len) consumed = static_cast<size_t>(pos - data);
    }
    out.consumed = consumed;
    switch (e) {
      case HPE_OK:
        out.event = Event::need_more;
        break;
      case HPE_PAUSED:
        if (pending_message_end) {
          message_done = false;
          out.event = Event::head;
        } else if (message_done) {
          message_done = false;
          out.event = Event::message_end;
        } else {
          out.event = Event::head;
        }
        break;
      case HPE_PAUSED_UPGRADE:
        if (pending_message_end) pending_message_end = false;
        message_done = false;
        out.event = Event::upgrade;
        break;
      default:
        if (!broken) {
          fail(400, std::string("malformed HTTP: ") + llhttp_errno_name(e));
        }
        out.event = Event::error;
        break;
    }
    // Bytes consumed after the head scan ended may start a new message: rescan from there.
    if (out.event == Event::message_end) reset_head_scan();
    return out;
  }
};

HttpParser::HttpParser(Kind kind, HttpLimits limits) : impl_(std::make_unique<Impl>()) {
  impl_->kind = kind;
  impl_->limits = limits;
  llhttp_settings_init(&impl_->settings);
  auto& st = impl_->settings;
  st.on_message_begin = &Impl::on_message_begin;
  st.on_url = &Impl::on_url;
  st.on_method = &Impl::on_method;
  st.on_status = &Impl::on_status;
  st.on_header_field = &Impl::on_header_field;
  st.on_header_value = &Impl::on_header_value;
  st.on_header_value_complete = &Impl::on_header_value_complete;
  st.on_headers_complete = &Impl::on_headers_complete;
  st.on_body = &Impl::on_body;
  st.on_message_complete = &Impl::on_message_complete;
  llhttp_init(&impl_->parser, kind == Kind::request ? HTTP_REQUEST : HTTP_RESPONSE,
              &impl_->settings);
  impl_->parser.data = impl_.get();
}

HttpParser::~HttpParser() = default;

void HttpParser::set_body_sink(BodySink sink) {
  impl_->body_sink = std::move(sink);
}
void HttpParser::set_response_to_head(bool head) {
  impl_->response_to_head = head;
}

HttpParser::Outcome HttpParser::feed(const char* data, size_t len) {
  return impl_->run(data, len);
}

HttpParser::Outcome HttpParser::finish() {
  Outcome out;
  if (impl_->broken) {
    out.event = Event::error;
    return out;
  }
  llhttp_errno_t e = llhttp_finish(&impl_->parser);
  if (e == HPE_OK || e == HPE_PAUSED) {
    out.event = impl_->message_done ? Event::message_end : Event::need_more;
    impl_->message_done = false;
    return out;
  }
  impl_->fail(502, std::string("truncated HTTP message: ") + llhttp_errno_name(e));
  out.event = Event::error;
  return out;
}

void HttpParser::resume() {
  if (llhttp_get_errno(&impl_->parser) == HPE_PAUSED) llhttp_resume(&impl_->parser);
}

const HttpHead& HttpParser::head() const {
  return impl_->head;
}
HttpHead& HttpParser::mutable_head() {
  return impl_->head;
}
bool HttpParser::body_until_eof() const {
  return llhttp_message_needs_eof(&impl_->parser) != 0;
}
int HttpParser::error_status() const {
  return impl_->err_status;
}
const std::string& HttpParser::error() const {
  return impl_->err;
}

}  // namespace airlock::proxy
