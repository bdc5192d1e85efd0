#include "proxy/ca.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>

namespace airlock::proxy {

namespace {

constexpr long kBackdateSeconds = 3600;
constexpr long kCaLifetimeSeconds = 3650L * 24 * 3600;
constexpr long kLeafLifetimeSeconds = 90L * 24 * 3600;

Status ssl_error(const char* what) {
  return Status(Errc::internal, std::string("boringssl: ") + what);
}

bssl::UniquePtr<EVP_PKEY> new_p256_key() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (!ec || !EC_KEY_generate_key(ec.get())) return nullptr;
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  if (!pkey || !EVP_PKEY_assign_EC_KEY(pkey.get(), ec.release())) return nullptr;
  return pkey;
}

// A random positive serial of 127 bits (at least 64 are required).
bool set_random_serial(X509* x) {
  bssl::UniquePtr<BIGNUM> bn(BN_new());
  if (!bn || !BN_rand(bn.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY)) return false;
  if (BN_is_zero(bn.get())) BN_one(bn.get());
  ASN1_INTEGER* serial = X509_get_serialNumber(x);
  return BN_to_ASN1_INTEGER(bn.get(), serial) != nullptr;
}

bool set_validity(X509* x, long lifetime) {
  return X509_gmtime_adj(X509_getm_notBefore(x), -kBackdateSeconds) &&
         X509_gmtime_adj(X509_getm_notAfter(x), lifetime);
}

bool add_ext(X509* issuer, X509* x, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  return ext && X509_add_ext(x, ext.get(), -1);
}

bool set_cn(X509_NAME* name, const std::string& cn) {
  return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    reinterpret_cast<const uint8_t*>(cn.data()),
                                    static_cast<int>(cn.size()), -1, 0);
}

// SAN built from structures, not from a config string, so no name can inject extra entries.
bool add_san(X509* x, const std::string& name) {
  bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  bssl::UniquePtr<GENERAL_NAME> gn(GENERAL_NAME_new());
  if (!names || !gn) return false;
  uint8_t ip[16];
  std::string bare = name;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']')
    bare = bare.substr(1, bare.size() - 2);
  int len = 0;
  if (inet_pton(AF_INET, bare.c_str(), ip) == 1)
    len = 4;
  else if (inet_pton(AF_INET6, bare.c_str(), ip) == 1)
    len = 16;
  if (len) {
    ASN1_OCTET_STRING* os = ASN1_OCTET_STRING_new();
    if (!os || !ASN1_OCTET_STRING_set(os, ip, len)) {
      ASN1_OCTET_STRING_free(os);
      return false;
    }
    gn->type = GEN_IPADD;
    gn->d.iPAddress = os;
  } else {
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    if (!s || !ASN1_STRING_set(s, name.data(), static_cast<int>(name.size()))) {
      ASN1_IA5STRING_free(s);
      return false;
    }
    gn->type = GEN_DNS;
    gn->d.dNSName = s;
  }
  if (!bssl::PushToStack(names.get(), std::move(gn))) return false;
  return X509_add1_ext_i2d(x, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

std::string random_hex(size_t bytes) {
  std::string out;
  uint8_t buf[32];
  RAND_bytes(buf, bytes);
  static const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < bytes; ++i) {
    out.push_back(hex[buf[i] >> 4]);
    out.push_back(hex[buf[i] & 15]);
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::create(size_t cache_size) {
  std::unique_ptr<CertificateAuthority> ca(new CertificateAuthority());
  ca->cache_size_ = cache_size ? cache_size : 1;
  ca->ca_key_ = new_p256_key();
  ca->leaf_key_ = new_p256_key();
  if (!ca->ca_key_ || !ca->leaf_key_) return ssl_error("P-256 key generation failed");

  bssl::UniquePtr<X509> x(X509_new());
  if (!x || !X509_set_version(x.get(), X509_VERSION_3) || !set_random_serial(x.get()) ||
      !set_validity(x.get(), kCaLifetimeSeconds))
    return ssl_error("CA certificate fields");
  X509_NAME* name = X509_get_subject_name(x.get());
  if (!set_cn(name, "airlock sandbox CA " + random_hex(8)) ||
      !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>("airlock"), -1, -1, 0) ||
      !X509_set_issuer_name(x.get(), name) || !X509_set_pubkey(x.get(), ca->ca_key_.get()))
    return ssl_error("CA certificate name");
  if (!add_ext(x.get(), x.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_ext(x.get(), x.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_ext(x.get(), x.get(), NID_subject_key_identifier, "hash"))
    return ssl_error("CA certificate extensions");
  if (!X509_sign(x.get(), ca->ca_key_.get(), EVP_sha256())) return ssl_error("CA signature");
  ca->cert_ = std::move(x);

  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_X509(bio.get(), ca->cert_.get())) return ssl_error("CA PEM");
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio.get(), &data, &len);
  ca->pem_.assign(reinterpret_cast<const char*>(data), len);
  return ca;
}

Result<std::shared_ptr<const LeafCertificate>> CertificateAuthority::mint(const std::string& name) {
  bssl::UniquePtr<X509> x(X509_new());
  if (!x || !X509_set_version(x.get(), X509_VERSION_3) || !set_random_serial(x.get()) ||
      !set_validity(x.get(), kLeafLifetimeSeconds))
    return ssl_error("leaf certificate fields");
  std::string cn = name.size() <= 64 ? name : name.substr(0, 64);  // CN is bounded; SAN is not
  if (!set_cn(X509_get_subject_name(x.get()), cn) ||
      !X509_set_issuer_name(x.get(), X509_get_subject_name(cert_.get())) ||
      !X509_set_pubkey(x.get(), leaf_key_.get()))
    return ssl_error("leaf certificate name");
  if (!add_ext(cert_.get(), x.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(cert_.get(), x.get(), NID_key_usage, "critical,digitalSignature") ||
      !add_ext(cert_.get(), x.get(), NID_ext_key_usage, "serverAuth") ||
      !add_ext(cert_.get(), x.get(), NID_authority_key_identifier, "keyid:always") ||
      !add_san(x.get(), name))
    return ssl_error("leaf certificate extensions");
  if (!X509_sign(x.get(), ca_key_.get(), EVP_sha256())) return ssl_error("leaf signature");
  auto leaf = std::make_shared<LeafCertificate>();
  leaf->cert = std::move(x);
  leaf->key = leaf_key_.get();
  return std::shared_ptr<const LeafCertificate>(std::move(leaf));
}

Result<std::shared_ptr<const LeafCertificate>> CertificateAuthority::leaf_for(
    const std::string& name) {
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(name);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.second);
      return it->second.first;
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto leaf, mint(name));
  std::lock_guard lock(mu_);
  auto it = cache_.find(name);
  if (it != cache_.end()) return it->second.first;  // another worker minted it meanwhile
  lru_.push_front(name);
  cache_.emplace(name, std::make_pair(leaf, lru_.begin()));
  while (cache_.size() > cache_size_) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  return leaf;
}

}  // namespace airlock::proxy
