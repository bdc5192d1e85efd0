// TLS contexts of the proxy (BoringSSL): the server side that intercepts client connections
// (leaf certificate chosen per connection in the select-certificate callback from the SNI), and
// the client side that talks to upstreams (verified against the configured CA bundle plus extra
// CA files, hostname checked, SNI set, ALPN http/1.1 only on both sides).
// Threads: contexts are built once, then used read-only by every worker.
#pragma once

#include <openssl/ssl.h>

#include <functional>
#include <string>
#include <vector>

#include "airlock/status.hpp"
#include "proxy/ca.h"

namespace airlock::proxy {

// Called inside the handshake with the SNI ("" when absent). Returns the name to mint the leaf
// for, or an error that fails the handshake.
class ClientHelloObserver {
 public:
  virtual ~ClientHelloObserver() = default;
  virtual Result<std::string> on_client_hello(const std::string& sni) = 0;
};

class TlsContexts {
 public:
  static Result<std::unique_ptr<TlsContexts>> create(CertificateAuthority* ca,
                                                     const std::string& ca_bundle,
                                                     const std::vector<std::string>& extra_ca);

  // A server-side SSL for an intercepted client connection on `fd`.
  bssl::UniquePtr<SSL> new_server(int fd, ClientHelloObserver* observer) const;
  // A client-side SSL to an upstream on `fd` for `host` (a name, or an IP literal without
  // brackets: then no SNI and the certificate must carry that IP).
  bssl::UniquePtr<SSL> new_client(int fd, const std::string& host, bool host_is_ip) const;

  // A short, safe description of why the last handshake on `ssl` failed.
  static std::string handshake_error(SSL* ssl, int ret);

 private:
  TlsContexts() = default;
  static ssl_select_cert_result_t select_certificate(const SSL_CLIENT_HELLO* hello);

  CertificateAuthority* ca_ = nullptr;
  bssl::UniquePtr<SSL_CTX> server_;
  bssl::UniquePtr<SSL_CTX> client_;
};

// Sessions read from a memory BIO that the connection fills with one recv(2) per readiness
// event (BoringSSL's socket BIO would read each record's header and body separately), and
// write straight to the socket.
bool use_memory_rbio(SSL* ssl);
size_t pending_tls_input(SSL* ssl);
bool feed_tls_input(SSL* ssl, const char* data, size_t len);

// Parses the server_name extension out of a ClientHello; "" when absent or malformed.
std::string sni_from_client_hello(const SSL_CLIENT_HELLO* hello);

}  // namespace airlock::proxy
