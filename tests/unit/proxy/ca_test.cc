// The per-proxy CA: P-256, self-signed CA:TRUE with keyCertSign, serial of at least 64 bits,
// random name; leaves verify against it with the right SAN (DNS or IP), are backdated, cached.
#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>

#include "proxy/ca.h"

using airlock::proxy::CertificateAuthority;

namespace {

bool verifies(X509* leaf, X509* ca, const char* host, const char* ip) {
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca);
  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  if (host) X509_VERIFY_PARAM_set1_host(param, host, strlen(host));
  if (ip) X509_VERIFY_PARAM_set1_ip_asc(param, ip);
  return X509_verify_cert(ctx.get()) == 1;
}

}  // namespace

TEST_CASE("ca: self-signed P-256 CA with random serial and name") {
  auto a = CertificateAuthority::create();
  auto b = CertificateAuthority::create();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  X509* ca = (*a)->cert();
  bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(ca));
  REQUIRE(EVP_PKEY_id(key.get()) == EVP_PKEY_EC);
  CHECK(EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key.get()))) ==
        NID_X9_62_prime256v1);
  CHECK(X509_check_ca(ca) == 1);
  CHECK((X509_get_key_usage(ca) & KU_KEY_CERT_SIGN) != 0);
  CHECK(X509_verify(ca, key.get()) == 1);
  bssl::UniquePtr<BIGNUM> serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(ca), nullptr));
  CHECK(BN_num_bits(serial.get()) >= 64);
  char name[256];
  X509_NAME_oneline(X509_get_subject_name(ca), name, sizeof name);
  CHECK(std::string(name).find("airlock sandbox CA ") != std::string::npos);
  CHECK((*a)->pem() != (*b)->pem());
  CHECK((*a)->pem().rfind("-----BEGIN CERTIFICATE-----", 0) == 0);
}

TEST_CASE("ca: leaves verify for their DNS name or IP only, and are backdated") {
  auto ca = CertificateAuthority::create();
  REQUIRE(ca.ok());
  auto leaf = (*ca)->leaf_for("api.example.test");
  REQUIRE(leaf.ok());
  X509* cert = (*leaf)->cert.get();
  CHECK(verifies(cert, (*ca)->cert(), "api.example.test", nullptr));
  CHECK_FALSE(verifies(cert, (*ca)->cert(), "other.example.test", nullptr));
  CHECK(X509_check_ca(cert) == 0);
  time_t soon = time(nullptr) - 30 * 60;  // 30 minutes ago is inside the validity window
  CHECK(X509_cmp_time(X509_get0_notBefore(cert), &soon) < 0);

  auto ip_leaf = (*ca)->leaf_for("127.0.0.1");
  REQUIRE(ip_leaf.ok());
  CHECK(verifies((*ip_leaf)->cert.get(), (*ca)->cert(), nullptr, "127.0.0.1"));
  CHECK_FALSE(verifies((*ip_leaf)->cert.get(), (*ca)->cert(), nullptr, "127.0.0.2"));
  auto v6_leaf = (*ca)->leaf_for("::1");
  REQUIRE(v6_leaf.ok());
  CHECK(verifies((*v6_leaf)->cert.get(), (*ca)->cert(), nullptr, "::1"));

  // Another CA's leaf does not verify against this CA.
  auto other = CertificateAuthority::create();
  REQUIRE(other.ok());
  auto foreign = (*other)->leaf_for("api.example.test");
  REQUIRE(foreign.ok());
  CHECK_FALSE(verifies((*foreign)->cert.get(), (*ca)->cert(), "api.example.test", nullptr));
}

TEST_CASE("ca: leaf cache returns the same certificate and stays bounded") {
  auto ca = CertificateAuthority::create(4);
  REQUIRE(ca.ok());
  auto first = (*ca)->leaf_for("a.test");
  auto again = (*ca)->leaf_for("a.test");
  REQUIRE(first.ok());
  REQUIRE(again.ok());
  CHECK(first->get() == again->get());
  for (int i = 0; i < 10; ++i) REQUIRE((*ca)->leaf_for("n" + std::to_string(i) + ".test").ok());
  auto evicted = (*ca)->leaf_for("a.test");
  REQUIRE(evicted.ok());
  CHECK(evicted->get() != first->get());  // minted anew after eviction
}
