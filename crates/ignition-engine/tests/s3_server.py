#!/usr/bin/env python3
# An S3-style server for tests (path-style GETs on 127.0.0.1). Every signed
# request is checked with botocore's own SigV4 signer; anonymous requests are
# served only from the bucket "public"; HEAD on a bucket names its region
# when DATA_DIR/BUCKET/.region does. Prints its port, then serves.
# usage: s3_server.py DATA_DIR SECRETS_JSON LOG_FILE
import http.server, sys, os, json, urllib.parse
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
root, secrets = sys.argv[1], json.loads(sys.argv[2])
log = open(sys.argv[3], "a")
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def answer(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        auth = self.headers.get("Authorization")
        bucket = urllib.parse.unquote(self.path.split("?")[0]).split("/")[1]
        verdict = "anonymous"
        if auth:
            fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
            akid, date, region, service, _ = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            req = AWSRequest(method="GET", url="http://" + self.headers["Host"] + self.path,
                             headers={h: self.headers[h] for h in signed})
            req.context["timestamp"] = self.headers["x-amz-date"]
            signer = S3SigV4Auth(Credentials(akid, secrets.get(akid, "?"),
                                             self.headers.get("x-amz-security-token")), service, region)
            cr = signer.canonical_request(req)
            want = signer.signature(signer.string_to_sign(req, cr), req)
            verdict = "good" if want == fields["Signature"] and akid in secrets else "bad"
        log.write(json.dumps({"path": self.path, "verdict": verdict,
                              "region": region if auth else None,
                              "token": self.headers.get("x-amz-security-token")}) + "\n")
        log.flush()
        if verdict == "bad" or (verdict == "anonymous" and bucket != "public"):
            return self.answer(403, b"<Error><Code>AccessDenied</Code></Error>")
        path = os.path.join(root, urllib.parse.unquote(self.path.split("?")[0]).lstrip("/"))
        if not os.path.isfile(path):
            return self.answer(404, b"<Error><Code>NoSuchKey</Code></Error>")
        self.answer(200, open(path, "rb").read())
    def do_HEAD(self):
        # A bucket's region, when DATA_DIR/BUCKET/.region names one, in the
        # header S3 sends even with a refusal.
        bucket = urllib.parse.unquote(self.path.split("?")[0]).split("/")[1]
        f = os.path.join(root, bucket, ".region")
        self.send_response(403 if os.path.isfile(f) else 404)
        if os.path.isfile(f):
            self.send_header("x-amz-bucket-region", open(f).read().strip())
        self.send_header("Content-Length", "0")
        self.end_headers()
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
