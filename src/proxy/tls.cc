#include "proxy/tls.h"

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "base/log.h"

namespace airlock::proxy {

namespace {

int observer_index() {
  static int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}
int contexts_index() {
  static int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// Only http/1.1 is spoken; a client offering only h2 gets no ALPN (and talks HTTP/1.1).
int select_alpn(SSL*, const uint8_t** out, uint8_t* out_len, const uint8_t* in, unsigned in_len,
                void*) {
  CBS list;
  CBS_init(&list, in, in_len);
  while (CBS_len(&list) > 0) {
    CBS proto;
    if (!CBS_get_u8_length_prefixed(&list, &proto)) return SSL_TLSEXT_ERR_NOACK;
    if (CBS_len(&proto) == 8 && memcmp(CBS_data(&proto), "http/1.1", 8) == 0) {
      *out = CBS_data(&proto);
      *out_len = 8;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

Status load_pem_file(X509_STORE* store, const std::string& path, bool required) {
  if (X509_STORE_load_locations(store, path.c_str(), nullptr) != 1) {
    ERR_clear_error();
    if (required) return Status(Errc::not_found, "cannot load CA file " + path);
    AIRLOCK_LOG_WARN("proxy", "upstream CA bundle {} not loaded", path);
  }
  return ok_status();
}

}  // namespace

std::string sni_from_client_hello(const SSL_CLIENT_HELLO* hello) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_server_name, &data, &len)) return "";
  CBS ext, list;
  CBS_init(&ext, data, len);
  if (!CBS_get_u16_length_prefixed(&ext, &list) || CBS_len(&ext) != 0) return "";
  while (CBS_len(&list) > 0) {
    uint8_t type;
    CBS name;
    if (!CBS_get_u8(&list, &type) || !CBS_get_u16_length_prefixed(&list, &name)) return "";
    if (type == TLSEXT_NAMETYPE_host_name) {
      if (CBS_len(&name) == 0 || CBS_len(&name) > 255 || CBS_contains_zero_byte(&name)) return "";
      return std::string(reinterpret_cast<const char*>(CBS_data(&name)), CBS_len(&name));
    }
  }
  return "";
}

ssl_select_cert_result_t TlsContexts::select_certificate(const SSL_CLIENT_HELLO* hello) {
  // No exception may unwind through BoringSSL's C frames.
  try {
    SSL* ssl = hello->ssl;
    auto* observer = static_cast<ClientHelloObserver*>(SSL_get_ex_data(ssl, observer_index()));
    auto* self =
        static_cast<TlsContexts*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), contexts_index()));
    if (!observer || !self) return ssl_select_cert_error;
    auto name = observer->on_client_hello(sni_from_client_hello(hello));
    if (!name.ok()) return ssl_select_cert_error;
    auto leaf = self->ca_->leaf_for(*name);
    if (!leaf.ok()) return ssl_select_cert_error;
    if (!SSL_use_certificate(ssl, (*leaf)->cert.get()) || !SSL_use_PrivateKey(ssl, (*leaf)->key) ||
        !SSL_add1_chain_cert(ssl, self->ca_->cert()))
      return ssl_select_cert_error;
    return ssl_select_cert_success;
  } catch (...) {
    return ssl_select_cert_error;
  }
}

Result<std::unique_ptr<TlsContexts>> TlsContexts::create(CertificateAuthority* ca,
                                                         const std::string& ca_bundle,
                                                         const std::vector<std::string>& extra_ca) {
  std::unique_ptr<TlsContexts> t(new TlsContexts());
  t->ca_ = ca;
  t->server_.reset(SSL_CTX_new(TLS_method()));
  t->client_.reset(SSL_CTX_new(TLS_method()));
  if (!t->server_ || !t->client_) return Status(Errc::internal, "SSL_CTX_new failed");

  // The output buffers grow and move between SSL_write retries; a retry always starts with the
  // bytes the failed call was given.
  const uint32_t write_modes = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
  SSL_CTX* s = t->server_.get();
  SSL_CTX_set_mode(s, write_modes);
  SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
  SSL_CTX_set_select_certificate_cb(s, &TlsContexts::select_certificate);
  SSL_CTX_set_alpn_select_cb(s, &select_alpn, nullptr);
  SSL_CTX_set_ex_data(s, contexts_index(), t.get());
  SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(s, SSL_OP_NO_TICKET);

  SSL_CTX* c = t->client_.get();
  SSL_CTX_set_mode(c, write_modes);
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_alpn_protos(c, kAlpnHttp11, sizeof kAlpnHttp11);
  X509_STORE* store = SSL_CTX_get_cert_store(c);
  if (!ca_bundle.empty()) AIRLOCK_RETURN_IF_ERROR(load_pem_file(store, ca_bundle, false));
  for (const auto& f : extra_ca) AIRLOCK_RETURN_IF_ERROR(load_pem_file(store, f, true));
  return t;
}

bool use_memory_rbio(SSL* ssl) {
  BIO* mem = BIO_new(BIO_s_mem());
  if (!mem) return false;
  BIO_set_mem_eof_return(mem, -1);  // empty means "wait for more", not end of stream
  SSL_set0_rbio(ssl, mem);
  return true;
}

size_t pending_tls_input(SSL* ssl) {
  return BIO_ctrl_pending(SSL_get_rbio(ssl));
}

bool feed_tls_input(SSL* ssl, const char* data, size_t len) {
  return len == 0 ||
         BIO_write(SSL_get_rbio(ssl), data, static_cast<int>(len)) == static_cast<int>(len);
}

bssl::UniquePtr<SSL> TlsContexts::new_server(int fd, ClientHelloObserver* observer) const {
  bssl::UniquePtr<SSL> ssl(SSL_new(server_.get()));
  if (!ssl || !SSL_set_fd(ssl.get(), fd) || !use_memory_rbio(ssl.get())) return nullptr;
  SSL_set_ex_data(ssl.get(), observer_index(), observer);
  SSL_set_accept_state(ssl.get());
  return ssl;
}

bssl::UniquePtr<SSL> TlsContexts::new_client(int fd, const std::string& host,
                                             bool host_is_ip) const {
  bssl::UniquePtr<SSL> ssl(SSL_new(client_.get()));
  if (!ssl || !SSL_set_fd(ssl.get(), fd) || !use_memory_rbio(ssl.get())) return nullptr;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  if (host_is_ip) {
    if (!X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())) return nullptr;
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (!X509_VERIFY_PARAM_set1_host(param, host.data(), host.size())) return nullptr;
    if (!SSL_set_tlsext_host_name(ssl.get(), host.c_str())) return nullptr;
  }
  SSL_set_connect_state(ssl.get());
  return ssl;
}

std::string TlsContexts::handshake_error(SSL* ssl, int ret) {
  int err = SSL_get_error(ssl, ret);
  long verify = SSL_get_verify_result(ssl);
  std::string out;
  if (verify != X509_V_OK) {
    out = std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
  } else {
    uint32_t e = ERR_peek_last_error();
    const char* reason = e ? ERR_reason_error_string(e) : nullptr;
    out = std::string("TLS handshake failed") + (reason ? std::string(": ") + reason : "") +
          (err == SSL_ERROR_SYSCALL ? " (connection closed)" : "");
  }
  ERR_clear_error();
  return out;
}

}  // namespace airlock::proxy
