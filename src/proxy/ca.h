// The per-proxy certificate authority: a P-256 key and self-signed CA certificate minted at
// start, and leaf certificates minted on demand for the names clients ask for (SNI or CONNECT
// authority), cached in a bounded LRU. Leaves share one per-proxy P-256 key (minting a leaf is
// then one signature) and are backdated an hour to absorb guest clock skew.
// Threads: every method may be called from any thread (the cache has its own lock).
#pragma once

#include <openssl/base.h>

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "airlock/status.hpp"

namespace airlock::proxy {

struct LeafCertificate {
  bssl::UniquePtr<X509> cert;
  EVP_PKEY* key = nullptr;  // borrowed from the CA (the shared leaf key)
};

class CertificateAuthority {
 public:
  static Result<std::unique_ptr<CertificateAuthority>> create(size_t cache_size = 1024);

  const std::string& pem() const { return pem_; }
  X509* cert() const { return cert_.get(); }

  // A leaf for `name`: a DNS name (SAN dNSName) or an IP literal (SAN iPAddress).
  Result<std::shared_ptr<const LeafCertificate>> leaf_for(const std::string& name);

 private:
  CertificateAuthority() = default;
  Result<std::shared_ptr<const LeafCertificate>> mint(const std::string& name);

  bssl::UniquePtr<EVP_PKEY> ca_key_;
  bssl::UniquePtr<X509> cert_;
  bssl::UniquePtr<EVP_PKEY> leaf_key_;
  std::string pem_;
  size_t cache_size_ = 1024;
  std::mutex mu_;
  std::list<std::string> lru_;  // front = most recent
  std::unordered_map<std::string, std::pair<std::shared_ptr<const LeafCertificate>,
                                            std::list<std::string>::iterator>>
      cache_;
};

}  // namespace airlock::proxy
