// Java 17 HttpClient through the egress proxy, with Bearer proxy credentials and no JVM-wide
// property. Run as a single-file program:
//
//   PROXY_HOST=127.0.0.1 PROXY_PORT=8081 PLUGIN_TOKEN=... TRUSTSTORE=egress.p12 \
//   TRUSTSTORE_PASSWORD=changeit java EgressClient.java URL...
//
// Java sends no Basic credentials on CONNECT (jdk.http.auth.tunneling.disabledSchemes), but it
// does send a `Proxy-Authorization: Bearer <plugin token>` header set on the request, on CONNECT
// and on plain requests. The egress CA is in a PKCS12 truststore made with keytool, loaded
// into this client's SSLContext only. HttpClient reports a refused CONNECT as "Tunnel failed,
// got: 403" without the status line; `EgressDiagnosis.explain` asks the proxy for the reason.
// One JSON line per URL given.

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ProxySelector;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.time.Duration;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class EgressClient {
    public static void main(String[] args) throws Exception {
        String proxyHost = System.getenv("PROXY_HOST");
        int proxyPort = Integer.parseInt(System.getenv("PROXY_PORT"));
        String bearer = "Bearer " + System.getenv("PLUGIN_TOKEN");

        KeyStore trust = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(System.getenv("TRUSTSTORE"))) {
            trust.load(in, System.getenv("TRUSTSTORE_PASSWORD").toCharArray());
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ssl = SSLContext.getInstance("TLS");
        ssl.init(null, tmf.getTrustManagers(), null);

        HttpClient client = HttpClient.newBuilder()
            .proxy(ProxySelector.of(new InetSocketAddress(proxyHost, proxyPort)))
            .sslContext(ssl)
            .version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10))
            .build();

        for (String url : args) {
            HttpRequest request = HttpRequest.newBuilder(URI.create(url))
                .header("Proxy-Authorization", bearer)
                .timeout(Duration.ofSeconds(10))
                .GET()
                .build();
            String out;
            try {
                HttpResponse<String> r = client.send(request, HttpResponse.BodyHandlers.ofString());
                String reason = r.headers().firstValue("x-vivified-egress-error").orElse("");
                out = "{\"url\": " + json(url) + ", \"status\": " + r.statusCode()
                    + ", \"egress_error\": " + json(reason) + ", \"text\": " + json(r.body()) + "}";
            } catch (IOException e) {
                String why = e.toString();
                if (String.valueOf(e.getMessage()).startsWith("Tunnel failed")) {
                    URI u = URI.create(url);
                    int port = u.getPort() == -1 ? 443 : u.getPort();
                    why += " | " + EgressDiagnosis.explain(proxyHost, proxyPort, bearer, u.getHost() + ":" + port);
                }
                out = "{\"url\": " + json(url) + ", \"status\": null, \"error\": " + json(why) + "}";
            }
            System.out.println(out);
        }
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }
}

/** The proxy's status line for a CONNECT, e.g. "HTTP/1.1 403 Forbidden (host_not_allowed: x)". */
class EgressDiagnosis {
    static String explain(String proxyHost, int proxyPort, String auth, String target) {
        try (Socket s = new Socket(proxyHost, proxyPort)) {
            s.setSoTimeout(10000);
            OutputStream out = s.getOutputStream();
            String req = "CONNECT " + target + " HTTP/1.1\r\nHost: " + target
                + "\r\nProxy-Authorization: " + auth + "\r\n\r\n";
            out.write(req.getBytes(StandardCharsets.ISO_8859_1));
            out.flush();
            String head = new String(s.getInputStream().readNBytes(4096), StandardCharsets.ISO_8859_1);
            return head.split("\r\n", 2)[0];
        } catch (IOException e) {
            return "no diagnosis: " + e;
        }
    }
}
