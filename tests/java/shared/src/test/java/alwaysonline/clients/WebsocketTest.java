package alwaysonline.clients;

import org.junit.jupiter.api.DisplayName;

/** The suite with transports = ["websocket"] (no polling handshake). */
@DisplayName("io.socket client over websocket only")
class WebsocketTest extends ProtocolSuite {
  @Override
  String transport() {
    return "websocket";
  }
}
